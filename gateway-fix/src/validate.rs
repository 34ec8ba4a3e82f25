//! Validation of a parsed message against a [`Dictionary`], producing the
//! session-level reject reason (SessionRejectReason, tag 373) and the
//! offending tag (RefTagID, 371) that Volume 2 test cases 14a-14i expect.
//!
//! One pass over the fields, no allocation: the "tag seen" set is a
//! generation-stamped array indexed by tag, so it is never cleared.

use crate::dictionary::{Dictionary, FieldDef, FieldType, Layout, MessageDef, Place};
use crate::field::{self, Timestamp};
use crate::frame::Message;
use thiserror::Error;

/// SessionRejectReason (373) values from the FIX 4.4 specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidTagNumber,
    RequiredTagMissing,
    TagNotDefinedForMessageType,
    UndefinedTag,
    TagSpecifiedWithoutValue,
    ValueIsIncorrect,
    IncorrectDataFormat,
    DecryptionProblem,
    SignatureProblem,
    CompIdProblem,
    SendingTimeAccuracyProblem,
    InvalidMsgType,
    XmlValidationError,
    TagAppearsMoreThanOnce,
    TagSpecifiedOutOfRequiredOrder,
    RepeatingGroupFieldsOutOfOrder,
    IncorrectNumInGroupCount,
    NonDataValueIncludesFieldDelimiter,
    Other,
}

impl RejectReason {
    /// The 373 code.
    pub fn code(self) -> u32 {
        use RejectReason::*;
        match self {
            InvalidTagNumber => 0,
            RequiredTagMissing => 1,
            TagNotDefinedForMessageType => 2,
            UndefinedTag => 3,
            TagSpecifiedWithoutValue => 4,
            ValueIsIncorrect => 5,
            IncorrectDataFormat => 6,
            DecryptionProblem => 7,
            SignatureProblem => 8,
            CompIdProblem => 9,
            SendingTimeAccuracyProblem => 10,
            InvalidMsgType => 11,
            XmlValidationError => 12,
            TagAppearsMoreThanOnce => 13,
            TagSpecifiedOutOfRequiredOrder => 14,
            RepeatingGroupFieldsOutOfOrder => 15,
            IncorrectNumInGroupCount => 16,
            NonDataValueIncludesFieldDelimiter => 17,
            Other => 99,
        }
    }

    /// The Text (58) sent with the reject; the wording of the specification
    /// (and of QuickFIX, which conformance scripts often compare against).
    pub fn text(self) -> &'static str {
        use RejectReason::*;
        match self {
            InvalidTagNumber => "Invalid tag number",
            RequiredTagMissing => "Required tag missing",
            TagNotDefinedForMessageType => "Tag not defined for this message type",
            UndefinedTag => "Undefined Tag",
            TagSpecifiedWithoutValue => "Tag specified without a value",
            ValueIsIncorrect => "Value is incorrect (out of range) for this tag",
            IncorrectDataFormat => "Incorrect data format for value",
            DecryptionProblem => "Decryption problem",
            SignatureProblem => "Signature problem",
            CompIdProblem => "CompID problem",
            SendingTimeAccuracyProblem => "SendingTime accuracy problem",
            InvalidMsgType => "Invalid MsgType",
            XmlValidationError => "XML Validation error",
            TagAppearsMoreThanOnce => "Tag appears more than once",
            TagSpecifiedOutOfRequiredOrder => "Tag specified out of required order",
            RepeatingGroupFieldsOutOfOrder => "Repeating group fields out of order",
            IncorrectNumInGroupCount => "Incorrect NumInGroup count for repeating group",
            NonDataValueIncludesFieldDelimiter => "Non Data value includes field delimiter",
            Other => "Other",
        }
    }
}

/// Why a message must be rejected with 35=3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("{} (RefTagID {ref_tag:?})", reason.text())]
pub struct Rejection {
    pub reason: RejectReason,
    /// RefTagID (371). `None` with `raw_tag` false: no tag to reference.
    pub ref_tag: Option<u32>,
    /// The offending tag was not a number; its text is
    /// [`Message::bad_tag`] and goes into 371 as is.
    pub raw_tag: bool,
}

impl Rejection {
    pub fn new(reason: RejectReason, ref_tag: Option<u32>) -> Self {
        Rejection { reason, ref_tag, raw_tag: false }
    }
}

fn rej(reason: RejectReason, tag: u32) -> Rejection {
    Rejection::new(reason, Some(tag))
}

/// How to treat tags in the user-defined range (5000-9999 and 10000+) that
/// the dictionary does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UserDefinedTags {
    /// Reject with 373=3 (Undefined Tag). Tags below 5000 that are not in
    /// the dictionary are always 373=0 (Invalid tag number, test case 14a).
    #[default]
    Reject,
    /// Accept and ignore them in the body (client-specific extensions).
    Allow,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ValidationOptions {
    pub user_defined_tags: UserDefinedTags,
}

/// Reusable validator for one dictionary.
pub struct Validator<'d> {
    dict: &'d Dictionary,
    opts: ValidationOptions,
    /// seen[tag] == generation means the tag was seen at top level in the
    /// current message.
    seen: Vec<u32>,
    generation: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Header,
    Body,
    Trailer,
}

impl<'d> Validator<'d> {
    pub fn new(dict: &'d Dictionary, opts: ValidationOptions) -> Self {
        Validator { dict, opts, seen: vec![0; dict.max_tag() as usize + 1], generation: 0 }
    }

    pub fn dictionary(&self) -> &'d Dictionary {
        self.dict
    }

    /// Validate `msg`; on success return its message definition.
    pub fn validate(&mut self, msg: &Message<'_>) -> Result<&'d MessageDef, Rejection> {
        let dict = self.dict;
        let Some(def) = dict.message(msg.msg_type()) else {
            return Err(Rejection::new(RejectReason::InvalidMsgType, None));
        };
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.fill(0);
            self.generation = 1;
        }
        let gen = self.generation;
        let n = msg.len();
        let mut section = Section::Header;
        let mut pos = 0;
        while pos < n {
            let f = msg.field(pos);
            if f.tag == 0 {
                return Err(Rejection { reason: RejectReason::InvalidTagNumber, ref_tag: None, raw_tag: true });
            }
            let Some(fdef) = dict.field(f.tag) else {
                if f.tag >= 5000 {
                    if self.opts.user_defined_tags == UserDefinedTags::Allow && section != Section::Trailer {
                        section = Section::Body;
                        pos += 1;
                        continue;
                    }
                    return Err(rej(RejectReason::UndefinedTag, f.tag));
                }
                return Err(rej(RejectReason::InvalidTagNumber, f.tag));
            };
            if f.value.is_empty() {
                return Err(rej(RejectReason::TagSpecifiedWithoutValue, f.tag));
            }
            let (layout, idx) = match fdef.place {
                Place::Header(i) => {
                    if section != Section::Header {
                        return Err(rej(RejectReason::TagSpecifiedOutOfRequiredOrder, f.tag));
                    }
                    (&dict.header, i as usize)
                }
                Place::Trailer(i) => {
                    section = Section::Trailer;
                    (&dict.trailer, i as usize)
                }
                Place::Body => {
                    if section == Section::Trailer {
                        return Err(rej(RejectReason::TagSpecifiedOutOfRequiredOrder, f.tag));
                    }
                    section = Section::Body;
                    match def.body.index_of(f.tag) {
                        Some(i) => (&def.body, i),
                        None => return Err(rej(RejectReason::TagNotDefinedForMessageType, f.tag)),
                    }
                }
            };
            let slot = &mut self.seen[f.tag as usize];
            if *slot == gen {
                return Err(rej(RejectReason::TagAppearsMoreThanOnce, f.tag));
            }
            *slot = gen;
            check_value(fdef, f.value)?;
            pos += 1;
            if let Some(g) = &layout.members[idx].group {
                pos = self.group(msg, pos, f.tag, f.value, g, layout)?;
            }
        }
        for layout in [&dict.header, &def.body, &dict.trailer] {
            for &t in layout.required_tags() {
                if self.seen[t as usize] != gen {
                    return Err(rej(RejectReason::RequiredTagMissing, t));
                }
            }
        }
        Ok(def)
    }

    /// Validate the entries of a repeating group whose count field (already
    /// checked as NUMINGROUP) was just read. Returns the position after the
    /// group. Entries start with the delimiter and members follow the
    /// dictionary order (Volume 1: "fields within a repeating group must be
    /// in the order specified").
    fn group(
        &mut self,
        msg: &Message<'_>,
        mut pos: usize,
        count_tag: u32,
        count_value: &[u8],
        g: &'d Layout,
        parent: &'d Layout,
    ) -> Result<usize, Rejection> {
        let count = field::parse_u64(count_value).unwrap_or(u64::MAX);
        let delim = g.delimiter();
        let mut entries: u64 = 0;
        let mut last: usize = 0;
        let n = msg.len();
        while pos < n {
            let f = msg.field(pos);
            let idx = if f.tag == delim {
                if entries > 0 {
                    missing_after(g, last)?;
                }
                entries += 1;
                last = 0;
                0
            } else if let Some(idx) = g.index_of(f.tag) {
                if entries == 0 {
                    return Err(rej(RejectReason::RepeatingGroupFieldsOutOfOrder, f.tag));
                }
                if idx <= last {
                    // A field that also belongs to the enclosing layout ends
                    // the group rather than breaking its order.
                    if parent.index_of(f.tag).is_some() {
                        break;
                    }
                    return Err(rej(
                        if idx == last {
                            RejectReason::TagAppearsMoreThanOnce
                        } else {
                            RejectReason::RepeatingGroupFieldsOutOfOrder
                        },
                        f.tag,
                    ));
                }
                for m in &g.members[last + 1..idx] {
                    if m.required {
                        return Err(rej(RejectReason::RequiredTagMissing, m.tag));
                    }
                }
                last = idx;
                idx
            } else {
                break;
            };
            if f.value.is_empty() {
                return Err(rej(RejectReason::TagSpecifiedWithoutValue, f.tag));
            }
            if let Some(fdef) = self.dict.field(f.tag) {
                check_value(fdef, f.value)?;
            }
            pos += 1;
            if let Some(inner) = &g.members[idx].group {
                pos = self.group(msg, pos, f.tag, f.value, inner, g)?;
            }
        }
        if entries > 0 {
            missing_after(g, last)?;
        }
        if entries != count {
            return Err(rej(RejectReason::IncorrectNumInGroupCount, count_tag));
        }
        Ok(pos)
    }
}

fn missing_after(g: &Layout, last: usize) -> Result<(), Rejection> {
    match g.members[last + 1..].iter().find(|m| m.required) {
        Some(m) => Err(rej(RejectReason::RequiredTagMissing, m.tag)),
        None => Ok(()),
    }
}

/// Type (373=6) and enumeration (373=5) check of one value.
pub fn check_value(def: &FieldDef, v: &[u8]) -> Result<(), Rejection> {
    use FieldType::*;
    let format_ok = match def.ty {
        Int => field::is_int(v),
        DayOfMonth => matches!(field::parse_u64(v), Some(1..=31)),
        Length | NumInGroup | SeqNum | TagNum => field::parse_u64(v).is_some(),
        Float | Qty | Price | PriceOffset | Amt | Percentage => field::is_float(v),
        Char => v.len() == 1,
        Boolean => v == b"Y" || v == b"N",
        UtcTimestamp => Timestamp::parse(v).is_some(),
        UtcTimeOnly => field::is_time_only(v),
        UtcDateOnly | LocalMktDate => field::is_date(v),
        MonthYear => field::is_month_year(v),
        MultipleValueString | MultipleCharValue => {
            !v.starts_with(b" ") && !v.ends_with(b" ") && !v.windows(2).any(|w| w == b"  ")
        }
        String | Currency | Exchange | Country | Data | Other => true,
    };
    if !format_ok {
        return Err(rej(RejectReason::IncorrectDataFormat, def.tag));
    }
    if def.has_enums() {
        let ok = match def.ty {
            MultipleValueString | MultipleCharValue => v.split(|&b| b == b' ').all(|t| def.enum_allows(t)),
            _ => def.enum_allows(v),
        };
        if !ok {
            return Err(rej(RejectReason::ValueIsIncorrect, def.tag));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{checksum, Parser};

    fn fix(s: &str) -> Vec<u8> {
        let s = s.replace('|', "\x01");
        let (bs, rest) = s.split_once('\x01').unwrap();
        let mut v = format!("{bs}\x019={}\x01{rest}", rest.len()).into_bytes();
        let cs = checksum(&v);
        v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
        v
    }

    const H: &str = "8=FIX.4.4|35=D|34=2|49=TW|52=20240101-00:00:00.000|56=ISLD|";

    fn check(s: &str) -> Result<(), Rejection> {
        let d = Dictionary::fix44();
        let mut v = Validator::new(d, ValidationOptions::default());
        let m = fix(s);
        let mut p = Parser::default();
        let msg = p.parse(&m, d).unwrap();
        v.validate(&msg).map(|_| ())
    }

    fn reason(s: &str) -> (u32, Option<u32>) {
        let r = check(s).unwrap_err();
        (r.reason.code(), r.ref_tag)
    }

    const NOS: &str = "11=ID|21=1|40=1|54=1|38=200.00|55=INTC|60=20240101-00:00:00|";

    #[test]
    fn valid_new_order_single() {
        check(&format!("{H}{NOS}")).unwrap();
        // header and body fields in any order (test case 15)
        check(
            "8=FIX.4.4|35=D|49=TW|34=3|56=ISLD|52=20240101-00:00:00|40=1|55=MSFT|60=20240101-00:00:00|54=1|21=3|11=id|",
        )
        .unwrap();
    }

    #[test]
    fn reasons() {
        assert_eq!(reason(&format!("{H}{NOS}999=HI|")), (0, Some(999)));
        assert_eq!(reason(&format!("{H}{NOS}5000=HI|")), (3, Some(5000)));
        assert!(check(&format!("{H}{NOS}-1=HI|")).unwrap_err().raw_tag);
        assert_eq!(
            // Symbol is optional in the FIX 4.4 Instrument component; Side is not.
            reason("8=FIX.4.4|35=D|49=TW|34=3|56=ISLD|52=20240101-00:00:00|40=1|60=20240101-00:00:00|55=X|21=3|11=id|"),
            (1, Some(54))
        );
        assert_eq!(reason(&format!("{H}{NOS}112=X|")), (2, Some(112)));
        assert_eq!(reason(&format!("{H}{NOS}58=|")), (4, Some(58)));
        assert_eq!(reason(&format!("{H}11=ID|21=1|40=Z|54=1|55=X|60=20240101-00:00:00|")), (5, Some(40)));
        assert_eq!(reason(&format!("{H}{NOS}44=1.2.3|")), (6, Some(44)));
        assert_eq!(reason(&format!("{H}11=ID|21=1|40=1|40=2|54=1|55=X|60=20240101-00:00:00|")), (13, Some(40)));
        assert_eq!(
            reason("8=FIX.4.4|35=D|11=id|21=3|40=1|54=1|55=MSFT|60=20240101-00:00:00|34=2|49=TW|52=20240101-00:00:00|56=ISLD|"),
            (14, Some(34))
        );
        assert_eq!(reason(&format!("{H}{NOS}386=3|336=PRE-OPEN|336=AFTER-HOURS|")), (16, Some(386)));
        assert_eq!(reason(&format!("{H}{NOS}386=1|625=X|336=PRE|")), (15, Some(625)));
        let r = check("8=FIX.4.4|35=*|34=2|49=TW|52=20240101-00:00:00|56=ISLD|").unwrap_err();
        assert_eq!((r.reason.code(), r.ref_tag), (11, None));
    }

    #[test]
    fn groups() {
        check(&format!("{H}{NOS}386=2|336=A|625=X|336=B|")).unwrap();
        check(&format!("{H}{NOS}386=0|")).unwrap(); // test case 21
        check(&format!("{H}{NOS}453=1|448=P|447=D|452=1|802=1|523=S|803=1|")).unwrap();
        // member repeated inside one entry
        assert_eq!(reason(&format!("{H}{NOS}386=1|336=A|625=X|625=Y|")), (13, Some(625)));
        // member before the delimiter of an entry
        assert_eq!(reason(&format!("{H}{NOS}453=1|447=D|448=P|")), (15, Some(447)));
    }
}
