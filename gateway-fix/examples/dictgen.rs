//! Generate a Castle `.cdict` dictionary from a QuickFIX XML data dictionary.
//!
//! cargo run -p castle-gateway-fix --example dictgen -- /work/shared/reference/fix/FIX44.xml > gateway-fix/dict/FIX44.cdict
//!
//! FIX 5.0SP2 over FIXT.1.1 (one session dictionary from both files):
//! cargo run -p castle-gateway-fix --example dictgen -- $DIR/FIXT11.xml $DIR/FIX50SP2.xml > gateway-fix/dict/FIX50SP2.cdict
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
    let result = match env::args().nth(2) {
        Some(app) => match fs::read_to_string(&app) {
            Ok(app_xml) => castle_gateway_fix::dictionary::quickfix_xml::to_cdict_fixt(
                &xml,
                &app_xml,
                "FIXT11.xml + FIX50SP2.xml",
                castle_gateway_fix::dictionary::quickfix_xml::FIXT_DETAILED,
            ),
            Err(e) => {
                eprintln!("{app}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => castle_gateway_fix::dictionary::quickfix_xml::to_cdict(&xml, &label),
    };
    match result {
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
