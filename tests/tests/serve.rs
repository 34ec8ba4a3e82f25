//! `castle serve` as a user runs it: starts on embedded defaults, reports
//! that it is up, and shuts down cleanly on SIGTERM.

use castle_tests::Proc;

#[test]
fn serve_check_starts_and_exits() {
    let mut p = Proc::castle(&["serve", "--check"]);
    let up = p.wait_for_line("castle is up");
    assert!(up.contains("engine at sequence 8"), "demo set-up should be 8 commands: {up}");
    let status = p.child.wait().expect("wait");
    assert!(status.success(), "serve --check exit status {status}");
}

#[test]
fn serve_runs_until_terminated() {
    let mut p = Proc::castle(&["serve"]);
    let up = p.wait_for_line("castle is up");
    assert!(up.contains("engine at sequence 8"), "{up}");
    p.signal("TERM");
    let stopped = p.wait_for_line("castle stopped at sequence");
    assert!(stopped.starts_with("castle stopped"));
    assert!(p.child.wait().expect("wait").success());
}
