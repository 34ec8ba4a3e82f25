//! Interop with a real FIX engine: a QuickFIX C++ initiator
//! (tests/quickfix/initiator.cpp), compiled here with g++ against Debian's
//! libquickfix-dev, logs on to the gateway, sends orders, a replace and
//! cancels, and checks the execution reports it receives with QuickFIX's
//! own data dictionary validation switched on (when the XML dictionary is
//! available); once as FIX 4.4, once as FIX 4.2.

mod common;

use castle_gateway_fix::{serve, Config};
use std::path::{Path, PathBuf};
use std::process::Command;

const HEADER: &str = "/usr/include/quickfix/Application.h";

/// Make sure the QuickFIX headers are there, installing them if we can.
fn ensure_quickfix() {
    if Path::new(HEADER).exists() {
        return;
    }
    eprintln!("QuickFIX headers missing: trying apt-get install -y libquickfix-dev");
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "libquickfix-dev"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    assert!(
        Path::new(HEADER).exists(),
        "QuickFIX C++ is required for this test: apt-get install -y libquickfix-dev (and g++)"
    );
}

/// A QuickFIX XML dictionary (FIX44.xml, FIX42.xml): the shared reference
/// copy next to the repository (as laid out for developers and CI), else
/// none (validation off).
fn quickfix_xml(name: &str) -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/reference/fix").join(name),
        manifest.join("../shared/reference/fix").join(name),
        PathBuf::from("/work/shared/reference/fix").join(name),
        PathBuf::from("/usr/share/quickfix").join(name),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Compile the initiator (`define`: extra -D flags), run it against a
/// gateway as `sender` on `begin`, and return what it printed.
async fn run_initiator(begin: &str, sender: &str, xml: &str, define: &[&str]) -> String {
    ensure_quickfix();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("initiator");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quickfix/initiator.cpp");
    let out = Command::new("g++")
        .args(["-O1", "-std=gnu++14", "-Wno-deprecated", "-Wno-deprecated-declarations"])
        .args(define)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .args(["-lquickfix", "-lpthread"])
        .output()
        .expect("g++ is required for this test: apt-get install -y g++");
    assert!(out.status.success(), "compiling the QuickFIX initiator failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let text = common::config_text(&dir.path().join("store"), "ListenAddress=127.0.0.1:0")
        + "[SESSION]\nBeginString=FIX.4.2\nTargetCompID=DESK42\nAccount=7\n";
    let server = serve(Config::parse(&text).unwrap(), common::engine()).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let dd = match quickfix_xml(xml) {
        Some(p) => format!("UseDataDictionary=Y\nDataDictionary={}\nValidateUserDefinedFields=N\n", p.display()),
        None => {
            eprintln!("{xml} not found: QuickFIX runs without its data dictionary");
            "UseDataDictionary=N\n".to_string()
        }
    };
    let settings = format!(
        "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=1\nFileStorePath={d}/qfstore\nFileLogPath={d}/qflog\n\
         StartTime=00:00:00\nEndTime=00:00:00\n{dd}ResetOnLogon=Y\nHeartBtInt=30\n\
         SocketConnectHost=127.0.0.1\nSocketConnectPort={port}\n\
         [SESSION]\nBeginString={begin}\nSenderCompID={sender}\nTargetCompID=CASTLE\n",
        d = dir.path().display()
    );
    let settings_path = dir.path().join("initiator.cfg");
    std::fs::write(&settings_path, settings).unwrap();

    let run = tokio::process::Command::new(&exe).arg(&settings_path).kill_on_drop(true).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("initiator finished within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    assert!(out.status.success(), "initiator failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("LOGON"));
    assert!(stdout.contains("DONE OK"), "{stdout}");
    assert!(!stdout.contains("SESSION-REJECT"), "{stdout}");
    server.shutdown().await;
    stdout
}

/// A report line the initiator printed for ClOrdID `cl` and ExecType `et`.
fn line(stdout: &str, cl: &str, et: &str) -> String {
    stdout
        .lines()
        .find(|l| l.contains(&format!(" 11={cl} ")) && l.contains(&format!(" 150={et} ")))
        .unwrap_or_else(|| panic!("no report 11={cl} 150={et} in\n{stdout}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickfix_initiator_orders_cancels_replaces() {
    let stdout = run_initiator("FIX.4.4", "DESK", "FIX44.xml", &[]).await;
    // Spot checks on the reports QuickFIX decoded.
    assert!(line(&stdout, "Q2", "5").contains(" 41=Q1 ") && line(&stdout, "Q2", "5").contains(" 38=0.3 "));
    let fill = line(&stdout, "Q2", "F");
    assert!(fill.contains(" 14=0.1 ") && fill.contains(" 151=0.2 ") && fill.contains(" 31=59001 "), "{fill}");
    assert!(line(&stdout, "Q4", "4").contains(" 41=Q2 "));
    assert!(stdout.contains("CXLREJ 11=Q5 41=Q4"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickfix_fix42_initiator_orders_cancels_replaces() {
    // The same script over a FIX 4.2 session, QuickFIX validating with its FIX42.xml.
    let stdout = run_initiator("FIX.4.2", "DESK42", "FIX42.xml", &["-DCASTLE_FIX42"]).await;
    assert!(line(&stdout, "Q2", "5").contains(" 41=Q1 "));
    let fill = line(&stdout, "Q2", "1");
    assert!(fill.contains(" 14=0.1 ") && fill.contains(" 151=0.2 ") && fill.contains(" 31=59001 "), "{fill}");
    assert!(line(&stdout, "Q3", "2").contains(" 39=2 "));
    assert!(line(&stdout, "Q4", "4").contains(" 41=Q2 "));
    assert!(stdout.contains("CXLREJ 11=Q5 41=Q4"), "{stdout}");
}
