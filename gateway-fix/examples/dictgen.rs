//! Generate a Castle `.cdict` dictionary from a QuickFIX XML data dictionary.
//!
//! cargo run -p castle-gateway-fix --example dictgen -- /work/shared/reference/fix/FIX44.xml > gateway-fix/dict/FIX44.cdict
use std::{env, fs, path::Path, process::ExitCode};

fn main() -> ExitCode {
    let Some(path) = env::args().nth(1) else {
        eprintln!("usage: dictgen <QuickFIX dictionary .xml>");
        return ExitCode::from(2);
    };
    let xml = match fs::read_to_string(&path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let label = Path::new(&path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(path.clone());
    match castle_gateway_fix::dictionary::quickfix_xml::to_cdict(&xml, &label) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::FAILURE
        }
    }
}
