//! Embeds every `dict/*.cdict` so that adding a FIX version is adding a data
//! file (see src/dictionary/mod.rs).
use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("dict");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cdict"))
                .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut out = String::from("/// Embedded dictionaries: (file stem, .cdict text).\n");
    out.push_str(&format!("pub(crate) const BUILTIN_COUNT: usize = {};\n", entries.len()));
    out.push_str("pub(crate) static BUILTIN: [(&str, &str); BUILTIN_COUNT] = [\n");
    for (name, path) in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    out.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtin_dicts.rs"), out).unwrap();
}
