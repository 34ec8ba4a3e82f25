//! Generator: QuickFIX XML data dictionary -> Castle `.cdict` text.
//!
//! The QuickFIX XML files are the source of facts; they are not committed.
//! `cargo run -p castle-gateway-fix --example dictgen -- FIX44.xml` prints the
//! `.cdict`, and a test checks the committed files are up to date when the
//! reference XML is present on the machine.
//!
//! The XML reader is a deliberately small hand-written one: QuickFIX files
//! only use elements, attributes and comments, and a generator that is run
//! by hand does not justify an XML dependency in the crate.

use super::{escape_token, DictError};
use std::collections::HashMap;
use std::fmt::Write;

#[derive(Clone, Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn xml_err(msg: impl Into<String>) -> DictError {
    DictError::Xml(msg.into())
}

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn parse_xml(text: &str) -> Result<Element, DictError> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut stack: Vec<Element> = vec![Element::default()];
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if text[i..].starts_with("<!--") {
            i = text[i..].find("-->").map(|p| i + p + 3).ok_or_else(|| xml_err("unterminated comment"))?;
            continue;
        }
        if text[i..].starts_with("<?") || text[i..].starts_with("<!") {
            i = text[i..].find('>').map(|p| i + p + 1).ok_or_else(|| xml_err("unterminated declaration"))?;
            continue;
        }
        let end = text[i..].find('>').map(|p| i + p).ok_or_else(|| xml_err("unterminated tag"))?;
        let inner = &text[i + 1..end];
        i = end + 1;
        if let Some(name) = inner.strip_prefix('/') {
            let el = stack.pop().ok_or_else(|| xml_err("unbalanced close"))?;
            if el.name != name.trim() {
                return Err(xml_err(format!("</{}> closes <{}>", name.trim(), el.name)));
            }
            stack.last_mut().ok_or_else(|| xml_err("unbalanced close"))?.children.push(el);
            continue;
        }
        let self_closing = inner.ends_with('/');
        let inner = inner.trim_end_matches('/');
        let name_end = inner.find(|c: char| c.is_ascii_whitespace()).unwrap_or(inner.len());
        let mut el = Element { name: inner[..name_end].to_string(), ..Default::default() };
        let mut rest = &inner[name_end..];
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let eq = rest.find('=').ok_or_else(|| xml_err("attribute without ="))?;
            let key = rest[..eq].trim().to_string();
            let after = rest[eq + 1..].trim_start();
            let q = after.chars().next().ok_or_else(|| xml_err("attribute value"))?;
            if q != '\'' && q != '"' {
                return Err(xml_err("unquoted attribute"));
            }
            let close = after[1..].find(q).ok_or_else(|| xml_err("unterminated attribute"))?;
            el.attrs.push((key, decode_entities(&after[1..1 + close])));
            rest = &after[close + 2..];
        }
        if self_closing {
            stack.last_mut().unwrap().children.push(el);
        } else {
            stack.push(el);
        }
    }
    let mut root = stack.pop().ok_or_else(|| xml_err("empty"))?;
    if !stack.is_empty() {
        return Err(xml_err("unclosed element"));
    }
    root.children.pop().filter(|e| e.name == "fix").ok_or_else(|| xml_err("root element is not <fix>"))
}

struct Ctx<'a> {
    tags: HashMap<&'a str, u32>,
    components: HashMap<&'a str, &'a Element>,
}

impl<'a> Ctx<'a> {
    /// Emit the members of `el` (fields, groups, flattened components).
    fn members(&self, el: &'a Element, required_ctx: bool, depth: usize, out: &mut String) -> Result<(), DictError> {
        if depth > 32 {
            return Err(xml_err("component nesting too deep (cycle?)"));
        }
        for c in &el.children {
            let name = c.attr("name").unwrap_or("");
            let required = required_ctx && c.attr("required") == Some("Y");
            match c.name.as_str() {
                "field" => {
                    let tag = self.tag(name)?;
                    writeln!(out, "{} {tag}", if required { "r" } else { "o" }).unwrap();
                }
                "group" => {
                    let tag = self.tag(name)?;
                    writeln!(out, "{} {tag}", if required { "gr" } else { "go" }).unwrap();
                    // Inside a group the first member is the delimiter; a
                    // member's "required" is relative to the group entry.
                    self.members(c, true, depth + 1, out)?;
                    writeln!(out, "end").unwrap();
                }
                "component" => {
                    let comp = self.components.get(name).ok_or_else(|| xml_err(format!("unknown component {name}")))?;
                    self.members(comp, required, depth + 1, out)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn tag(&self, name: &str) -> Result<u32, DictError> {
        self.tags.get(name).copied().ok_or_else(|| xml_err(format!("unknown field {name}")))
    }
}

/// The FIX 5.0SP2 messages Castle's gateway reads or writes: detailed in
/// the FIXT session dictionary (see [`to_cdict_fixt`]).
pub const FIXT_DETAILED: &[&str] = &["D", "F", "G", "H", "q", "AF", "x", "V", "8", "9", "r", "j", "W", "X", "Y", "y"];

/// Convert a QuickFIX XML dictionary to Castle `.cdict` text.
/// `source` is a label recorded in the header comment.
pub fn to_cdict(xml: &str, source: &str) -> Result<String, DictError> {
    root_to_cdict(&parse_xml(xml)?, source)
}

/// A FIXT session dictionary: the transport's header, trailer, admin
/// messages and BeginString (FIXT.1.1) with the application dictionary's
/// messages and components (FIX 5.0SP2), fields from both (the transport's
/// definition wins). One `.cdict` then validates everything a FIXT session
/// carries, as for the FIX 4.x versions.
///
/// Only the application messages in `detailed` keep their layout; the
/// others are declared with an empty body: still known message types (so an
/// unsupported one gets BusinessMessageReject, not "invalid MsgType"), but
/// without the ~2.5 MB their nested components expand to in 5.0SP2.
pub fn to_cdict_fixt(transport_xml: &str, app_xml: &str, source: &str, detailed: &[&str]) -> Result<String, DictError> {
    let mut root = parse_xml(transport_xml)?;
    let app = parse_xml(app_xml)?;
    for section in ["fields", "messages", "components"] {
        let Some(from) = app.children.iter().find(|c| c.name == section) else { continue };
        if root.child(section).is_none() {
            root.children.push(Element { name: section.into(), ..Default::default() });
        }
        let to = root.children.iter_mut().find(|c| c.name == section).expect("just ensured");
        for el in &from.children {
            let key = if section == "fields" { "number" } else { "name" };
            let dup = to.children.iter().any(|c| c.attr(key).is_some() && c.attr(key) == el.attr(key));
            if !dup {
                let mut el = el.clone();
                if section == "messages" && !el.attr("msgtype").is_some_and(|t| detailed.contains(&t)) {
                    el.children.clear();
                }
                to.children.push(el);
            }
        }
    }
    root_to_cdict(&root, source)
}

fn root_to_cdict(root: &Element, source: &str) -> Result<String, DictError> {
    let kind = root.attr("type").unwrap_or("FIX");
    let major = root.attr("major").unwrap_or("4");
    let minor = root.attr("minor").unwrap_or("4");
    let sp = root.attr("servicepack").unwrap_or("0");
    let begin = if sp != "0" { format!("{kind}.{major}.{minor}SP{sp}") } else { format!("{kind}.{major}.{minor}") };
    let mut out = String::new();
    writeln!(
        out,
        "# Castle FIX dictionary, generated from {source} by examples/dictgen.rs.\n\
         # Do not edit: regenerate. Format: see src/dictionary/mod.rs.\n\
         castle-dict 1\nbegin {begin}"
    )
    .unwrap();

    let fields_el = root.child("fields").ok_or_else(|| xml_err("no <fields>"))?;
    let mut ctx = Ctx { tags: HashMap::new(), components: HashMap::new() };
    let mut length_fields: Vec<(&str, u32)> = Vec::new();
    let mut data_fields: Vec<(&str, u32)> = Vec::new();
    for f in &fields_el.children {
        let name = f.attr("name").ok_or_else(|| xml_err("field without name"))?;
        let tag: u32 = f
            .attr("number")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| xml_err(format!("field {name} without number")))?;
        let ty = f.attr("type").unwrap_or("STRING");
        ctx.tags.insert(name, tag);
        match ty {
            "LENGTH" => length_fields.push((name, tag)),
            "DATA" | "XMLDATA" => data_fields.push((name, tag)),
            _ => {}
        }
        write!(out, "field {tag} {name} {ty}").unwrap();
        for v in &f.children {
            if let Some(e) = v.attr("enum") {
                // A few old dictionaries carry prose instead of values
                // (FIX42 "ISO Country Code"); such an "enum" would reject
                // every real value, so it is dropped.
                if e.is_empty() || e.contains(' ') {
                    continue;
                }
                write!(out, " {}", escape_token(e)).unwrap();
            }
        }
        out.push('\n');
    }
    // Length-prefixed data pairs. Names follow <Data>Len / <Data>Length,
    // with four historical exceptions.
    let special = [
        ("RawDataLength", "RawData"),
        ("SignatureLength", "Signature"),
        ("XmlDataLen", "XmlData"),
        ("EncodedTextLen", "EncodedText"),
    ];
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for (dname, dtag) in &data_fields {
        let found = length_fields.iter().find(|(lname, _)| {
            *lname == format!("{dname}Len")
                || *lname == format!("{dname}Length")
                || special.iter().any(|(l, d)| l == lname && d == dname)
        });
        if let Some((_, ltag)) = found {
            pairs.push((*ltag, *dtag));
        }
    }
    pairs.sort_unstable();
    for (l, d) in pairs {
        writeln!(out, "data {l} {d}").unwrap();
    }

    if let Some(comps) = root.child("components") {
        for c in &comps.children {
            if let Some(n) = c.attr("name") {
                ctx.components.insert(n, c);
            }
        }
    }
    for section in ["header", "trailer"] {
        if let Some(el) = root.child(section) {
            if el.children.is_empty() {
                continue;
            }
            writeln!(out, "{section}").unwrap();
            ctx.members(el, true, 0, &mut out)?;
            writeln!(out, "end").unwrap();
        }
    }
    if let Some(msgs) = root.child("messages") {
        for m in &msgs.children {
            let name = m.attr("name").ok_or_else(|| xml_err("message without name"))?;
            let mt = m.attr("msgtype").ok_or_else(|| xml_err(format!("message {name} without msgtype")))?;
            let cat = if m.attr("msgcat") == Some("admin") { "admin" } else { "app" };
            writeln!(out, "message {} {name} {cat}", escape_token(mt)).unwrap();
            ctx.members(m, true, 0, &mut out)?;
            writeln!(out, "end").unwrap();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::Dictionary;

    const MINI: &str = r#"<?xml version="1.0"?>
<fix type='FIX' major='4' minor='4' servicepack='0'>
 <!-- comment -->
 <header><field name='BeginString' required='Y' /></header>
 <trailer><field name='CheckSum' required='Y'/></trailer>
 <messages>
  <message name='X' msgtype='x' msgcat='app'>
   <component name='C' required='N'/>
   <group name='NoA' required='Y'><field name='A' required='Y'/></group>
  </message>
 </messages>
 <components>
  <component name='C'><field name='A' required='Y'/></component>
 </components>
 <fields>
  <field number='8' name='BeginString' type='STRING'/>
  <field number='10' name='CheckSum' type='STRING'/>
  <field number='1' name='A' type='CHAR'><value enum='a' description='x'/><value enum='b &amp; c' description='y'/></field>
  <field number='2' name='NoA' type='NUMINGROUP'/>
 </fields>
</fix>"#;

    #[test]
    fn converts_and_loads() {
        let text = to_cdict(MINI, "mini").unwrap();
        assert!(text.contains("message x X app\no 1\ngr 2\nr 1\nend\nend"), "{text}");
        let d = Dictionary::parse(&text).unwrap();
        assert_eq!(d.begin_string(), "FIX.4.4");
        assert!(d.field(1).unwrap().enum_allows(b"a"));
    }

    /// The committed dictionaries must match what the generator produces
    /// from the reference XML. The XML is not part of the repository: it is
    /// looked for in `CASTLE_FIX_SPEC_DIR`, else in `shared/reference/fix`
    /// beside the checkout. Without it the test fails, unless
    /// `CASTLE_NO_FIX_SPEC=1` says so explicitly (scripts/test sets that, and
    /// prints that it did, on machines without the reference files).
    #[test]
    fn committed_dictionaries_are_up_to_date() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var_os("CASTLE_FIX_SPEC_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| manifest.join("../../shared/reference/fix"));
        if !dir.join("FIX44.xml").exists() {
            assert!(
                std::env::var("CASTLE_NO_FIX_SPEC").as_deref() == Ok("1"),
                "reference FIX XML not found in {}: set CASTLE_FIX_SPEC_DIR (or CASTLE_NO_FIX_SPEC=1 to skip this check)",
                dir.display()
            );
            return;
        }
        let read = |name: &str| {
            let xml = dir.join(format!("{name}.xml"));
            std::fs::read_to_string(&xml).unwrap_or_else(|e| panic!("{}: {e}", xml.display()))
        };
        for name in crate::dictionary::Dictionary::builtin_names() {
            let generated = match name {
                // FIX 5.0SP2 runs over FIXT.1.1: one merged session dictionary.
                "FIX50SP2" => {
                    to_cdict_fixt(&read("FIXT11"), &read(name), "FIXT11.xml + FIX50SP2.xml", FIXT_DETAILED).unwrap()
                }
                _ => to_cdict(&read(name), &format!("{name}.xml")).unwrap(),
            };
            let committed = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dict/{name}.cdict")),
            )
            .unwrap();
            assert!(generated == committed, "dict/{name}.cdict is stale: regenerate with examples/dictgen.rs");
        }
    }
}
