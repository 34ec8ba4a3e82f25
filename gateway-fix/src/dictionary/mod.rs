//! FIX data dictionary: field types, enumerations, message layouts (header,
//! body, trailer, repeating groups with their delimiter and order).
//!
//! Castle keeps its dictionaries as data in its own compact text format
//! (`gateway-fix/dict/*.cdict`, described below), generated from the
//! QuickFIX XML data dictionaries by `examples/dictgen.rs`. Every `.cdict`
//! file in `dict/` is embedded by `build.rs`, so adding FIX 4.2, FIXT 1.1 or
//! FIX 5.0SP2 is a matter of generating and committing a file: no code.
//!
//! Format (line oriented, `#` starts a comment):
//! ```text
//! castle-dict 1
//! begin FIX.4.4                      BeginString this dictionary validates
//! field <tag> <name> <TYPE> [enum..] enum values are %-escaped tokens
//! data <length-tag> <data-tag>       length-prefixed data pair (may hold SOH)
//! header | trailer                   open a section
//! message <MsgType> <Name> admin|app open a message body
//!   r <tag> / o <tag>                required / optional field, in order
//!   gr <count-tag> / go <count-tag>  required / optional repeating group;
//!                                    its first member is the delimiter
//!   end                              closes a group, section or message
//! ```
//! Components are flattened by the generator: a field inside a component is
//! required only if it and every enclosing component are required.

pub mod quickfix_xml;

use std::sync::OnceLock;
use thiserror::Error;

/// FIX data types that validation distinguishes. Types the format does not
/// know (future versions) load as [`FieldType::Other`] and are unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Int,
    Length,
    NumInGroup,
    SeqNum,
    TagNum,
    DayOfMonth,
    Float,
    Qty,
    Price,
    PriceOffset,
    Amt,
    Percentage,
    Char,
    Boolean,
    String,
    MultipleValueString,
    MultipleCharValue,
    Currency,
    Exchange,
    Country,
    UtcTimestamp,
    UtcTimeOnly,
    UtcDateOnly,
    LocalMktDate,
    MonthYear,
    Data,
    Other,
}

impl FieldType {
    pub fn from_name(s: &str) -> FieldType {
        use FieldType::*;
        match s {
            "INT" => Int,
            "LENGTH" => Length,
            "NUMINGROUP" => NumInGroup,
            "SEQNUM" => SeqNum,
            "TAGNUM" => TagNum,
            "DAYOFMONTH" => DayOfMonth,
            "FLOAT" => Float,
            "QTY" | "QUANTITY" => Qty,
            "PRICE" => Price,
            "PRICEOFFSET" => PriceOffset,
            "AMT" => Amt,
            "PERCENTAGE" => Percentage,
            "CHAR" => Char,
            "BOOLEAN" => Boolean,
            "STRING" => String,
            "MULTIPLEVALUESTRING" | "MULTIPLESTRINGVALUE" => MultipleValueString,
            "MULTIPLECHARVALUE" => MultipleCharValue,
            "CURRENCY" => Currency,
            "EXCHANGE" => Exchange,
            "COUNTRY" => Country,
            "UTCTIMESTAMP" => UtcTimestamp,
            "UTCTIMEONLY" => UtcTimeOnly,
            "UTCDATEONLY" | "UTCDATE" => UtcDateOnly,
            "LOCALMKTDATE" => LocalMktDate,
            "MONTHYEAR" => MonthYear,
            "DATA" | "XMLDATA" => Data,
            _ => Other,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FieldDef {
    pub tag: u32,
    pub name: Box<str>,
    pub ty: FieldType,
    /// Sorted enumerated values; empty means "any value of the type".
    enums: Box<[Box<[u8]>]>,
    /// The one-byte ASCII enumerated values as a bit set (bit b = byte b):
    /// most enumerations (Side, OrdType, ExecType, ...) are single
    /// characters, checked with one bit test instead of a binary search.
    ascii_chars: u128,
    /// Where the field sits if it is a header or trailer field, precomputed
    /// so validation needs one lookup per body field instead of three.
    pub place: Place,
}

/// Header/trailer membership of a field (index into that layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Header(u32),
    Trailer(u32),
    Body,
}

impl FieldDef {
    pub fn has_enums(&self) -> bool {
        !self.enums.is_empty()
    }
    pub fn enum_allows(&self, v: &[u8]) -> bool {
        if self.enums.is_empty() {
            return true;
        }
        if let [b] = v {
            if *b < 128 {
                return self.ascii_chars & (1u128 << *b) != 0;
            }
        }
        self.enums.binary_search_by(|e| (**e).cmp(v)).is_ok()
    }
}

/// One entry of a layout: a field, or a repeating group's count field.
#[derive(Clone, Debug)]
pub struct Member {
    pub tag: u32,
    pub required: bool,
    pub group: Option<Box<Layout>>,
}

/// Ordered members of a header, trailer, message body or group entry.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub members: Vec<Member>,
    /// (tag, member index) sorted by tag for lookup.
    by_tag: Vec<(u32, u32)>,
    /// Tags of the required members, precomputed for the missing-field check.
    required: Vec<u32>,
    /// member index + 1 (0: not a member) for tags below [`DIRECT_TAGS`],
    /// in layouts large enough for a binary search to cost: one load per
    /// field on the validation path instead of seven or eight probes.
    direct: Box<[u16]>,
}

/// Tags below this get a direct lookup in large layouts (every tag of the
/// common order messages is below it).
const DIRECT_TAGS: usize = 1024;
/// Layouts with fewer members keep the binary search only.
const DIRECT_MIN_MEMBERS: usize = 8;

impl Layout {
    fn finish(&mut self) {
        self.by_tag = self.members.iter().enumerate().map(|(i, m)| (m.tag, i as u32)).collect();
        self.by_tag.sort_unstable();
        self.by_tag.dedup_by_key(|e| e.0);
        self.required = self.members.iter().filter(|m| m.required).map(|m| m.tag).collect();
        self.direct = Box::default();
        if self.members.len() >= DIRECT_MIN_MEMBERS && self.members.len() < u16::MAX as usize {
            let mut direct = vec![0u16; DIRECT_TAGS];
            for &(tag, i) in &self.by_tag {
                if (tag as usize) < DIRECT_TAGS {
                    direct[tag as usize] = i as u16 + 1;
                }
            }
            self.direct = direct.into();
        }
    }
    /// Tags of the required members, in layout order.
    pub fn required_tags(&self) -> &[u32] {
        &self.required
    }
    /// Index of `tag` among the members.
    #[inline]
    pub fn index_of(&self, tag: u32) -> Option<usize> {
        if let Some(&i) = self.direct.get(tag as usize) {
            return (i as usize).checked_sub(1);
        }
        self.by_tag.binary_search_by_key(&tag, |e| e.0).ok().map(|i| self.by_tag[i].1 as usize)
    }
    /// Delimiter (first member) of a group entry layout.
    pub fn delimiter(&self) -> u32 {
        self.members.first().map(|m| m.tag).unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct MessageDef {
    pub msg_type: Box<[u8]>,
    pub name: Box<str>,
    pub admin: bool,
    pub body: Layout,
}

/// A loaded dictionary for one BeginString.
#[derive(Debug)]
pub struct Dictionary {
    begin_string: Box<str>,
    fields: Vec<FieldDef>,
    /// tag -> index into `fields` + 1 (0 = undefined), dense up to the
    /// highest tag: one indexed load per field on the validation path.
    field_index: Vec<u32>,
    data_pairs: Vec<(u32, u32)>,
    /// Bit set over tags: the length tags that start a data pair, so the
    /// parser's per-field question "is this a data length?" is one bit test.
    data_starts: Vec<u64>,
    pub header: Layout,
    pub trailer: Layout,
    messages: Vec<MessageDef>,
    /// One-byte MsgTypes (all the common ones): index into `messages` + 1.
    message_by_byte: [u16; 128],
}

#[derive(Debug, Error)]
pub enum DictError {
    #[error("line {line}: {msg}")]
    Syntax { line: usize, msg: String },
    #[error("XML: {0}")]
    Xml(String),
}

fn syntax(line: usize, msg: impl Into<String>) -> DictError {
    DictError::Syntax { line, msg: msg.into() }
}

/// Escape a token for the `.cdict` format (space, '%', control bytes).
pub(crate) fn escape_token(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b <= b' ' || b == b'%' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn unescape_token(v: &str) -> Option<Vec<u8>> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl Dictionary {
    /// Load a dictionary in the Castle `.cdict` format.
    pub fn parse(text: &str) -> Result<Dictionary, DictError> {
        let mut d = Dictionary {
            begin_string: "".into(),
            fields: Vec::new(),
            field_index: Vec::new(),
            data_pairs: Vec::new(),
            data_starts: Vec::new(),
            message_by_byte: [0; 128],
            header: Layout::default(),
            trailer: Layout::default(),
            messages: Vec::new(),
        };
        #[derive(Clone, Copy)]
        enum Target {
            Header,
            Trailer,
            Message,
        }
        // Stack of open layouts: the section/message body first, then groups
        // (each with its count tag and required flag).
        let mut stack: Vec<(Layout, u32, bool)> = Vec::new();
        /// MsgType, name, admin flag of the message being read.
        type MsgHead = (Box<[u8]>, Box<str>, bool);
        let mut target: Option<(Target, Option<MsgHead>)> = None;
        let mut saw_magic = false;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let mut tok = l.split_ascii_whitespace();
            let kw = tok.next().unwrap_or("");
            let mut num = |what: &str| -> Result<u32, DictError> {
                tok.next()
                    .and_then(|t| t.parse::<u32>().ok())
                    .filter(|&t| t > 0)
                    .ok_or_else(|| syntax(line, format!("expected {what}")))
            };
            match kw {
                "castle-dict" => {
                    if num("format version")? != 1 {
                        return Err(syntax(line, "unsupported format version"));
                    }
                    saw_magic = true;
                }
                _ if !saw_magic => return Err(syntax(line, "missing `castle-dict 1` header")),
                "begin" => {
                    d.begin_string = l[5..].trim().into();
                }
                "field" => {
                    let tag = num("tag")?;
                    let mut tok = l.split_ascii_whitespace().skip(2);
                    let name = tok.next().ok_or_else(|| syntax(line, "field name"))?;
                    let ty = tok.next().ok_or_else(|| syntax(line, "field type"))?;
                    let mut enums = tok
                        .map(|t| unescape_token(t).map(Vec::into_boxed_slice))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| syntax(line, "bad enum escape"))?;
                    enums.sort();
                    enums.dedup();
                    let ascii_chars = enums.iter().fold(0u128, |acc, e| match **e {
                        [b] if b < 128 => acc | (1u128 << b),
                        _ => acc,
                    });
                    d.fields.push(FieldDef {
                        tag,
                        name: name.into(),
                        ty: FieldType::from_name(ty),
                        enums: enums.into(),
                        ascii_chars,
                        place: Place::Body,
                    });
                }
                "data" => {
                    let len = num("length tag")?;
                    let data = num("data tag")?;
                    d.data_pairs.push((len, data));
                }
                "header" | "trailer" | "message" => {
                    if target.is_some() {
                        return Err(syntax(line, "section opened inside another"));
                    }
                    let t = match kw {
                        "header" => (Target::Header, None),
                        "trailer" => (Target::Trailer, None),
                        _ => {
                            let mut tok = l.split_ascii_whitespace().skip(1);
                            let mt = tok.next().ok_or_else(|| syntax(line, "MsgType"))?;
                            let name = tok.next().ok_or_else(|| syntax(line, "message name"))?;
                            let admin = match tok.next() {
                                Some("admin") => true,
                                Some("app") => false,
                                _ => return Err(syntax(line, "expected admin|app")),
                            };
                            let mt = unescape_token(mt).ok_or_else(|| syntax(line, "MsgType"))?;
                            (Target::Message, Some((mt.into(), name.into(), admin)))
                        }
                    };
                    target = Some(t);
                    stack.push((Layout::default(), 0, false));
                }
                "r" | "o" | "gr" | "go" => {
                    let tag = num("tag")?;
                    let top = stack.last_mut().ok_or_else(|| syntax(line, "member outside a section"))?;
                    let required = kw.ends_with('r');
                    if kw.starts_with('g') {
                        stack.push((Layout::default(), tag, required));
                    } else {
                        top.0.members.push(Member { tag, required, group: None });
                    }
                }
                "end" => {
                    let (mut layout, count_tag, required) =
                        stack.pop().ok_or_else(|| syntax(line, "unbalanced end"))?;
                    layout.finish();
                    if let Some(parent) = stack.last_mut() {
                        if layout.members.is_empty() {
                            return Err(syntax(line, "empty group"));
                        }
                        parent.0.members.push(Member { tag: count_tag, required, group: Some(Box::new(layout)) });
                    } else {
                        match target.take() {
                            Some((Target::Header, _)) => d.header = layout,
                            Some((Target::Trailer, _)) => d.trailer = layout,
                            Some((Target::Message, Some((msg_type, name, admin)))) => {
                                d.messages.push(MessageDef { msg_type, name, admin, body: layout })
                            }
                            _ => return Err(syntax(line, "unbalanced end")),
                        }
                    }
                }
                other => return Err(syntax(line, format!("unknown keyword `{other}`"))),
            }
        }
        if !stack.is_empty() {
            return Err(syntax(0, "unterminated section"));
        }
        if d.begin_string.is_empty() {
            return Err(syntax(0, "missing `begin`"));
        }
        d.fields.sort_by_key(|f| f.tag);
        d.fields.dedup_by_key(|f| f.tag);
        let max = d.fields.last().map(|f| f.tag).unwrap_or(0) as usize;
        d.field_index = vec![0; max + 1];
        for (i, f) in d.fields.iter().enumerate() {
            d.field_index[f.tag as usize] = i as u32 + 1;
        }
        for f in d.fields.iter_mut() {
            if let Some(i) = d.header.index_of(f.tag) {
                f.place = Place::Header(i as u32);
            } else if let Some(i) = d.trailer.index_of(f.tag) {
                f.place = Place::Trailer(i as u32);
            }
        }
        d.messages.sort_by(|a, b| a.msg_type.cmp(&b.msg_type));
        for (i, m) in d.messages.iter().enumerate() {
            if let [b] = *m.msg_type {
                if b < 128 && i < u16::MAX as usize {
                    d.message_by_byte[b as usize] = i as u16 + 1;
                }
            }
        }
        d.data_pairs.sort_unstable();
        d.data_starts = vec![0u64; max / 64 + 1];
        for &(len, _) in &d.data_pairs {
            // Only LENGTH-typed fields start a data field.
            if d.field(len).is_none_or(|f| f.ty != FieldType::Length) {
                continue;
            }
            if let Some(w) = d.data_starts.get_mut(len as usize / 64) {
                *w |= 1 << (len % 64);
            }
        }
        // Every referenced tag must be defined, so validation never meets a
        // layout member without a type.
        let mut missing = None;
        let mut check = |l: &Layout| {
            fn walk(l: &Layout, d: &Dictionary, missing: &mut Option<u32>) {
                for m in &l.members {
                    if d.field(m.tag).is_none() {
                        *missing = Some(m.tag);
                    }
                    if let Some(g) = &m.group {
                        walk(g, d, missing);
                    }
                }
            }
            walk(l, &d, &mut missing);
        };
        check(&d.header);
        check(&d.trailer);
        for m in &d.messages {
            check(&m.body);
        }
        if let Some(t) = missing {
            return Err(syntax(0, format!("layout references undefined tag {t}")));
        }
        Ok(d)
    }

    pub fn begin_string(&self) -> &str {
        &self.begin_string
    }

    #[inline]
    pub fn field(&self, tag: u32) -> Option<&FieldDef> {
        match self.field_index.get(tag as usize) {
            Some(&i) if i != 0 => Some(&self.fields[i as usize - 1]),
            _ => None,
        }
    }

    /// Highest defined tag.
    pub fn max_tag(&self) -> u32 {
        self.fields.last().map(|f| f.tag).unwrap_or(0)
    }

    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    pub fn message(&self, msg_type: &[u8]) -> Option<&MessageDef> {
        if let [b] = msg_type {
            if *b < 128 {
                let i = self.message_by_byte[*b as usize] as usize;
                return i.checked_sub(1).map(|i| &self.messages[i]);
            }
        }
        self.messages.binary_search_by(|m| (*m.msg_type).cmp(msg_type)).ok().map(|i| &self.messages[i])
    }

    pub fn messages(&self) -> &[MessageDef] {
        &self.messages
    }

    pub fn data_pairs(&self) -> &[(u32, u32)] {
        &self.data_pairs
    }

    /// A built-in dictionary by file stem ("FIX44", "FIX42", "FIXT11").
    /// Parsed once, on first use.
    pub fn builtin(name: &str) -> Option<&'static Dictionary> {
        let i = BUILTIN.iter().position(|(n, _)| *n == name)?;
        Some(
            BUILTIN_CACHE[i]
                .get_or_init(|| Dictionary::parse(BUILTIN[i].1).expect("embedded dictionary is valid (tested)")),
        )
    }

    /// Names of the embedded dictionaries.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    /// The embedded FIX 4.4 dictionary.
    pub fn fix44() -> &'static Dictionary {
        Self::builtin("FIX44").expect("FIX44.cdict is embedded")
    }
}

impl crate::frame::DataFields for Dictionary {
    #[inline]
    fn data_tag_for(&self, length_tag: u32) -> Option<u32> {
        // Called for every field: one bit test answers "no" for all but the
        // few (~20) length tags that start a data pair.
        let word = self.data_starts.get(length_tag as usize / 64).copied().unwrap_or(0);
        if word & (1 << (length_tag % 64)) == 0 {
            return None;
        }
        self.data_pairs.binary_search_by_key(&length_tag, |p| p.0).ok().map(|i| self.data_pairs[i].1)
    }
}

// `BUILTIN: &[(&str, &str)]` and `BUILTIN_COUNT`, generated by build.rs from
// dict/*.cdict.
include!(concat!(env!("OUT_DIR"), "/builtin_dicts.rs"));

static BUILTIN_CACHE: [OnceLock<Dictionary>; BUILTIN_COUNT] = [const { OnceLock::new() }; BUILTIN_COUNT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_dictionary_loads() {
        for name in Dictionary::builtin_names() {
            let d = Dictionary::builtin(name).unwrap();
            assert!(!d.messages().is_empty(), "{name}");
        }
        let d = Dictionary::fix44();
        assert_eq!(d.begin_string(), "FIX.4.4");
        let nos = d.message(b"D").unwrap();
        assert_eq!(&*nos.name, "NewOrderSingle");
        assert!(!nos.admin);
        assert!(d.message(b"A").unwrap().admin);
        assert_eq!(d.field(54).unwrap().ty, FieldType::Char);
        assert!(d.field(54).unwrap().enum_allows(b"1"));
        assert!(!d.field(54).unwrap().enum_allows(b"Z"));
        let hops = &d.header.members[d.header.index_of(627).unwrap()];
        assert_eq!(hops.group.as_ref().unwrap().delimiter(), 628);
        use crate::frame::DataFields;
        assert_eq!(d.data_tag_for(95), Some(96));
        assert_eq!(d.data_tag_for(93), Some(89));
    }

    #[test]
    fn one_byte_enum_fast_path_agrees_with_the_list() {
        for name in Dictionary::builtin_names() {
            let d = Dictionary::builtin(name).unwrap();
            for f in d.fields().iter().filter(|f| f.has_enums()) {
                for b in 0..=255u8 {
                    let listed = f.enums.iter().any(|e| **e == [b]);
                    assert_eq!(f.enum_allows(&[b]), listed, "{name} tag {} byte {b}", f.tag);
                }
            }
        }
    }

    #[test]
    fn rejects_malformed_files() {
        assert!(Dictionary::parse("begin X\n").is_err());
        assert!(Dictionary::parse("castle-dict 1\nbegin X\nheader\nr 8\nend\n").is_err());
        assert!(Dictionary::parse("castle-dict 1\nbegin X\nfield 8 B STRING\nheader\nr 8\n").is_err());
        let ok = Dictionary::parse("castle-dict 1\nbegin X\nfield 8 B STRING a%20b\nheader\nr 8\nend\n").unwrap();
        assert!(ok.field(8).unwrap().enum_allows(b"a b"));
    }
}
