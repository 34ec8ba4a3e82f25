//! Per-version adjustments of outbound application messages.
//!
//! The order layer speaks FIX 4.4. A FIX 5.0SP2 (FIXT.1.1) session takes the
//! same bodies unchanged (DefaultApplVerID=9 is agreed at Logon, so no
//! ApplVerID is needed per message). A FIX 4.2 session differs in values, not
//! only in fields:
//!
//! - ExecutionReport needs ExecTransType 20 (0 new, 3 status);
//! - 4.2 has no ExecType F (trade): a fill is 1 (partial fill) or 2 (fill)
//!   after OrdStatus; nor I (order status): a status report is
//!   ExecTransType 3 with ExecType = the current OrdStatus;
//! - enumerations 4.4 extended (OrdRejReason 103, CxlRejReason 102) fall back
//!   to the 4.2 catch-all.
//!
//! Fields the session's dictionary does not define for the message (4.3+
//! additions such as SecondaryExecID 527 or ExecRestatementReason 378) are
//! dropped, driven by the dictionary: adding a version is data plus the value
//! mappings here.

use crate::dictionary::Dictionary;
use crate::field::SOH;

/// Which adjustments a session needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// FIX 4.4 and FIX 5.0SP2 over FIXT.1.1: as produced.
    AsIs,
    Fix42,
}

impl Dialect {
    pub fn for_begin_string(begin: &str) -> Dialect {
        match begin {
            "FIX.4.2" => Dialect::Fix42,
            _ => Dialect::AsIs,
        }
    }
}

/// Fallback values when the session's dictionary does not know ours.
const FALLBACK: &[(u32, &[u8])] = &[(103, b"0"), (102, b"2")];

/// Adapt the body of an outbound `msg_type` message for `dialect`.
pub fn adapt(dialect: Dialect, dict: &Dictionary, msg_type: &[u8], body: &mut Vec<u8>) {
    if dialect == Dialect::AsIs || !matches!(msg_type, b"8" | b"9" | b"j" | b"r") {
        return;
    }
    let Some(def) = dict.message(msg_type) else { return };
    let fields: Vec<(u32, &[u8])> = body
        .split(|&b| b == SOH)
        .filter(|f| !f.is_empty())
        .filter_map(|f| {
            let eq = f.iter().position(|&b| b == b'=')?;
            let tag = std::str::from_utf8(&f[..eq]).ok()?.parse().ok()?;
            Some((tag, &f[eq + 1..]))
        })
        .collect();
    let get = |t: u32| fields.iter().find(|(tag, _)| *tag == t).map(|(_, v)| *v);
    let (exec_type, trans) = match (msg_type, get(150), get(39)) {
        (b"8", Some(b"F"), Some(b"2")) => (Some(&b"2"[..]), Some(&b"0"[..])),
        (b"8", Some(b"F"), _) => (Some(&b"1"[..]), Some(&b"0"[..])),
        (b"8", Some(b"I"), status) => (status, Some(&b"3"[..])),
        (b"8", t, _) => (t, Some(&b"0"[..])),
        _ => (None, None),
    };
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut put = |tag: u32, v: &[u8]| {
        crate::field::write_u64(&mut out, tag as u64);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(SOH);
    };
    for &(tag, v) in &fields {
        if def.body.index_of(tag).is_none() && dict.header.index_of(tag).is_none() {
            continue;
        }
        match tag {
            150 => put(150, exec_type.unwrap_or(v)),
            17 => {
                put(17, v);
                if let Some(t) = trans {
                    put(20, t);
                }
            }
            _ => match dict.field(tag) {
                Some(f) if f.has_enums() && !f.enum_allows(v) => match FALLBACK.iter().find(|(t, _)| *t == tag) {
                    Some((_, fb)) => put(tag, fb),
                    None => continue,
                },
                _ => put(tag, v),
            },
        }
    }
    *body = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mt: &[u8], body: &str) -> String {
        let mut b = body.replace('|', "\x01").into_bytes();
        adapt(Dialect::Fix42, Dictionary::builtin("FIX42").unwrap(), mt, &mut b);
        String::from_utf8(b).unwrap().replace('\x01', "|")
    }

    #[test]
    fn fix42_execution_reports() {
        let fill =
            "37=1|11=A|17=9-1T|150=F|39=1|1=7|55=X|54=1|38=1|40=2|44=5|59=1|151=0.5|14=0.5|6=5|31=5|32=0.5|527=3|";
        assert_eq!(
            run(b"8", fill),
            "37=1|11=A|17=9-1T|20=0|150=1|39=1|1=7|55=X|54=1|38=1|40=2|44=5|59=1|151=0.5|14=0.5|6=5|31=5|32=0.5|",
            "partial fill, no SecondaryExecID"
        );
        assert!(run(b"8", &fill.replace("39=1", "39=2")).contains("|150=2|39=2|"));
        let status = "37=1|11=A|17=S1-0|150=I|39=0|1=7|55=X|54=1|151=1|14=0|6=0|790=R|";
        assert_eq!(run(b"8", status), "37=1|11=A|17=S1-0|20=3|150=0|39=0|1=7|55=X|54=1|151=1|14=0|6=0|");
        let rej = "37=NONE|11=A|17=G1-1|150=8|39=8|103=13|55=X|54=1|151=0|14=0|6=0|58=why|";
        assert!(run(b"8", rej).contains("|20=0|150=8|39=8|103=0|"), "{}", run(b"8", rej));
        assert!(run(b"9", "37=1|11=B|41=A|39=0|434=1|102=99|58=x|").contains("|102=2|"));
    }
}
