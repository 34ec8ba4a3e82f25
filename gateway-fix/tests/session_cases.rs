//! FIX 4.4 Volume 2 "Session-level test cases and expected behaviors", the
//! ones that apply to an acceptor, one test per case (named `tc<case>_...`).
//! The client is "TW", Castle is "ISLD" (as in the QuickFIX acceptance
//! scripts, which follow the same case numbering).

use castle_gateway_fix::field::Timestamp;
use castle_gateway_fix::frame::checksum;
use castle_gateway_fix::session::{
    Action, AllowAll, Authenticator, DisconnectReason, Session, SessionConfig, SessionEvent, State,
};
use castle_gateway_fix::store::{FileStore, FsyncPolicy, MemoryStore, MessageStore};
use castle_gateway_fix::Dictionary;
use std::time::Duration;

const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z

struct H<S: MessageStore = MemoryStore> {
    s: Session<S>,
    now: Timestamp,
}

/// Build a client frame from "35=..|34=..|..." with `<TIME>`, `<TIME-n>`,
/// `<TIME+n>` (seconds) replaced relative to `now`.
fn frame(begin: &str, body: &str, now: Timestamp) -> Vec<u8> {
    let mut s = body.to_string();
    while let Some(i) = s.find("<TIME") {
        let j = i + s[i..].find('>').unwrap();
        let off: i64 = match &s[i + 5..j] {
            "" => 0,
            o => o.trim_start_matches('+').parse().unwrap(),
        };
        let t = now.add_secs(off).to_fix_string();
        s.replace_range(i..=j, &t);
    }
    let body = s.replace('|', "\x01");
    let mut v = format!("8={begin}\x019={}\x01{body}", body.len()).into_bytes();
    let cs = checksum(&v);
    v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
    v
}

/// Fields of a sent frame.
fn fields(b: &[u8]) -> Vec<(u32, String)> {
    String::from_utf8_lossy(b)
        .split('\x01')
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (t, v) = f.split_once('=').unwrap();
            (t.parse().unwrap(), v.to_string())
        })
        .collect()
}

fn get(b: &[u8], tag: u32) -> Option<String> {
    fields(b).into_iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
}

fn sends(a: &[Action]) -> Vec<Vec<u8>> {
    a.iter()
        .filter_map(|x| match x {
            Action::Send(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn disconnect(a: &[Action]) -> Option<DisconnectReason> {
    a.iter().find_map(|x| match x {
        Action::Disconnect(r) => Some(r.clone()),
        _ => None,
    })
}

fn delivered(a: &[Action]) -> Vec<u64> {
    a.iter()
        .filter_map(|x| match x {
            Action::Deliver(m) => Some(m.seq),
            _ => None,
        })
        .collect()
}

/// Assert a sent message has the given "tag=value" fields.
#[track_caller]
fn has(b: &[u8], want: &str) {
    let f = fields(b);
    for kv in want.split('|') {
        let (t, v) = kv.split_once('=').unwrap();
        let t: u32 = t.parse().unwrap();
        assert!(
            f.iter().any(|(ft, fv)| *ft == t && fv == v),
            "missing {kv} in {}",
            String::from_utf8_lossy(b).replace('\x01', "|")
        );
    }
}

#[track_caller]
fn lacks(b: &[u8], tag: u32) {
    assert!(get(b, tag).is_none(), "unexpected tag {tag}");
}

fn config() -> SessionConfig {
    SessionConfig::new("ISLD", "TW")
}

impl H<MemoryStore> {
    fn new() -> Self {
        Self::with(config(), MemoryStore::new(), Box::new(AllowAll))
    }
}

impl<S: MessageStore> H<S> {
    fn with(cfg: SessionConfig, store: S, auth: Box<dyn Authenticator + Send>) -> Self {
        let mut s = Session::new(cfg, Dictionary::fix44(), store, auth);
        let now = Timestamp::from_unix_secs(T0);
        s.on_connect(now).unwrap();
        H { s, now }
    }
    fn raw(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        self.s.on_bytes(bytes, self.now, &mut out);
        out
    }
    fn send(&mut self, body: &str) -> Vec<Action> {
        let f = frame("FIX.4.4", body, self.now);
        self.raw(&f)
    }
    fn advance(&mut self, secs: f64) -> Vec<Action> {
        self.now = self.now.add_nanos((secs * 1e9) as i64);
        let mut out = Vec::new();
        self.s.on_timer(self.now, &mut out);
        out
    }
    /// Standard logon with seq 1 and HeartBtInt 30; returns the actions.
    fn logon(&mut self) -> Vec<Action> {
        let a = self.send("35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|");
        assert_eq!(self.s.state(), State::Active, "{a:?}");
        a
    }
}

const NOS: &str = "11=ID|21=3|40=1|54=1|55=INTC|60=<TIME>|";

// ---- 1B: acceptor logon ---------------------------------------------------

#[test]
fn tc1b_a_valid_logon_with_correct_msg_seq_num() {
    let mut h = H::new();
    let a = h.logon();
    let s = sends(&a);
    assert_eq!(s.len(), 1);
    has(&s[0], "35=A|34=1|49=ISLD|56=TW|98=0|108=30");
    lacks(&s[0], 141);
    assert!(a.iter().any(|x| matches!(x, Action::Event(SessionEvent::LoggedOn { .. }))));
    assert_eq!(h.s.next_target_seq(), 2);
    assert_eq!(h.s.heartbeat_interval(), Duration::from_secs(30));
}

#[test]
fn tc1b_a_valid_logon_with_msg_seq_num_too_high() {
    let mut h = H::new();
    let a = h.send("35=A|34=5|49=TW|52=<TIME>|56=ISLD|98=0|108=30|");
    let s = sends(&a);
    assert_eq!(s.len(), 2);
    has(&s[0], "35=A|34=1");
    has(&s[1], "35=2|34=2|7=1|16=0");
    // the peer gap-fills 1..4; the Logon (5) was already processed
    let a = h.send("35=4|34=1|43=Y|122=<TIME>|49=TW|52=<TIME>|56=ISLD|123=Y|36=5|");
    assert!(sends(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 6);
    let a = h.send("35=1|34=6|49=TW|52=<TIME>|56=ISLD|112=X|");
    has(&sends(&a)[0], "35=0|112=X|34=3");
}

#[test]
fn tc1b_b_duplicate_logon_is_refused() {
    let mut h = H::new();
    h.logon();
    // A second connection for the same CompID pair.
    assert!(h.s.on_connect(h.now).is_err());
    assert_eq!(h.s.state(), State::Active);
}

#[test]
fn tc1b_c_invalid_comp_ids_disconnect() {
    for body in ["35=A|34=1|49=WT|52=<TIME>|56=ISLD|98=0|108=30|", "35=A|34=1|49=TW|52=<TIME>|56=DLSI|98=0|108=30|"] {
        let mut h = H::new();
        let a = h.send(body);
        assert!(sends(&a).is_empty());
        assert_eq!(disconnect(&a), Some(DisconnectReason::CompIdProblem));
    }
}

#[test]
fn tc1b_d_invalid_logon_wrong_begin_string() {
    let mut h = H::new();
    let f = frame("FIX.3.9", "35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|", h.now);
    let a = h.raw(&f);
    assert!(sends(&a).is_empty());
    assert_eq!(disconnect(&a), Some(DisconnectReason::IncorrectBeginString));
}

#[test]
fn tc1b_d_invalid_logon_bad_sending_time() {
    let mut h = H::new();
    let a = h.send("35=A|34=1|49=TW|52=20010101-00:00:00|56=ISLD|98=0|108=30|");
    assert!(sends(&a).is_empty());
    assert_eq!(disconnect(&a), Some(DisconnectReason::SendingTimeAccuracy));
}

#[test]
fn tc1b_d_invalid_logon_length_invalid_is_ignored_then_times_out() {
    let mut h = H::new();
    let mut f = frame("FIX.4.4", "35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|", h.now);
    f[12] = b'9'; // corrupt BodyLength digits
    let a = h.raw(&f);
    assert!(sends(&a).is_empty() && disconnect(&a).is_none());
    let a = h.advance(11.0);
    assert_eq!(disconnect(&a), Some(DisconnectReason::LogonTimeout));
}

#[test]
fn tc1b_d_invalid_logon_missing_heart_bt_int() {
    let mut h = H::new();
    let a = h.send("35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|");
    has(&sends(&a)[0], "35=5");
    assert!(matches!(disconnect(&a), Some(DisconnectReason::InvalidLogon(_))));
}

struct Creds;
impl Authenticator for Creds {
    fn authenticate(&self, _: &SessionConfig, u: Option<&[u8]>, p: Option<&[u8]>) -> Result<(), String> {
        if u == Some(b"alice") && p == Some(b"s3cret") {
            Ok(())
        } else {
            Err("Invalid username or password".into())
        }
    }
}

#[test]
fn tc1b_d_logon_authentication_username_password() {
    let mut h = H::with(config(), MemoryStore::new(), Box::new(Creds));
    let a = h.send("35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|553=alice|554=wrong|");
    has(&sends(&a)[0], "35=5|58=authentication failed: Invalid username or password");
    assert!(matches!(disconnect(&a), Some(DisconnectReason::AuthenticationFailed(_))));

    let mut h = H::with(config(), MemoryStore::new(), Box::new(Creds));
    let a = h.send("35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|553=alice|554=s3cret|");
    has(&sends(&a)[0], "35=A");
    assert!(a.iter().any(|x| matches!(x,
        Action::Event(SessionEvent::LoggedOn { username: Some(u), .. }) if u == "alice")));
}

#[test]
fn tc1b_e_first_message_not_logon() {
    let mut h = H::new();
    let a = h.send("35=0|34=1|49=TW|52=<TIME>|56=ISLD|");
    assert!(sends(&a).is_empty());
    assert_eq!(disconnect(&a), Some(DisconnectReason::FirstMessageNotLogon));
}

#[test]
fn tc1b_reset_seq_num_flag_on_logon() {
    let mut h = H::new();
    h.logon();
    h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    let mut out = Vec::new();
    h.s.on_disconnected(h.now);
    h.s.on_connect(h.now).unwrap();
    h.s.on_bytes(&frame("FIX.4.4", "35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|141=Y|", h.now), h.now, &mut out);
    let s = sends(&out);
    has(&s[0], "35=A|34=1|141=Y");
    assert_eq!(h.s.next_target_seq(), 2);
    assert_eq!(h.s.next_sender_seq(), 2);
}

#[test]
fn tc17_encryption_is_not_supported() {
    let mut h = H::new();
    let a = h.send("35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=1|108=30|");
    has(&sends(&a)[0], "35=5");
    assert!(matches!(disconnect(&a), Some(DisconnectReason::InvalidLogon(_))));
}

// ---- 2: standard header ---------------------------------------------------

#[test]
fn tc2a_msg_seq_num_correct() {
    let mut h = H::new();
    h.logon();
    let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert_eq!(delivered(&a), vec![2]);
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc2b_msg_seq_num_too_high_queues_and_requests_resend() {
    let mut h = H::new();
    h.logon();
    let a = h.send(&format!("35=D|34=4|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert!(delivered(&a).is_empty());
    has(&sends(&a)[0], "35=2|7=2|16=0");
    // further messages beyond the gap: no second ResendRequest
    let a = h.send(&format!("35=D|34=5|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert!(sends(&a).is_empty());
    // the peer resends 2 and gap-fills 3; queued 4 and 5 follow in order
    let a = h.send(&format!("35=D|34=2|43=Y|122=<TIME>|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert_eq!(delivered(&a), vec![2]);
    let a = h.send("35=4|34=3|43=Y|122=<TIME>|49=TW|52=<TIME>|56=ISLD|123=Y|36=4|");
    assert_eq!(delivered(&a), vec![4, 5]);
    assert_eq!(h.s.next_target_seq(), 6);
}

#[test]
fn tc2c_msg_seq_num_too_low_logout_and_disconnect() {
    let mut h = H::new();
    h.logon();
    h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    let a = h.send(&format!("35=D|34=1|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    has(&sends(&a)[0], "35=5|58=MsgSeqNum too low, expecting 3 but received 1");
    assert!(matches!(disconnect(&a), Some(DisconnectReason::MsgSeqNumTooLow { expected: 3, received: 1 })));
}

#[test]
fn tc2d_garbled_message_ignored() {
    let mut h = H::new();
    h.logon();
    let mut f = frame("FIX.4.4", &format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"), h.now);
    let n = f.len();
    f[n - 3] ^= 1; // checksum digit
    let a = h.raw(&f);
    assert!(sends(&a).is_empty() && delivered(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 2);
    let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert_eq!(delivered(&a), vec![2]);
}

#[test]
fn tc2e_poss_dup_already_received_is_ignored() {
    let mut h = H::new();
    h.logon();
    h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    let a = h.send(&format!("35=D|34=2|43=Y|122=<TIME-1>|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert!(a.iter().all(|x| matches!(x, Action::Event(_))), "{a:?}");
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc2e_poss_dup_not_received_is_processed() {
    let mut h = H::new();
    h.logon();
    let a = h.send(&format!("35=D|34=2|43=Y|122=<TIME-1>|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert_eq!(delivered(&a), vec![2]);
    assert!(matches!(&a[..], [Action::Deliver(m)] if m.poss_dup));
}

#[test]
fn tc2f_poss_dup_orig_sending_time_after_sending_time() {
    let mut h = H::new();
    h.logon();
    h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    h.send(&format!("35=D|34=3|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    let a = h.send(&format!("35=D|34=2|43=Y|122=<TIME+10>|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    let s = sends(&a);
    has(&s[0], "35=3|45=2|373=10|372=D");
    has(&s[1], "35=5");
    assert_eq!(h.s.state(), State::LogoutSent);
    let a = h.send("35=5|34=4|49=TW|52=<TIME>|56=ISLD|");
    assert_eq!(disconnect(&a), Some(DisconnectReason::LogoutCompleted));
}

#[test]
fn tc2g_poss_dup_without_orig_sending_time() {
    let mut h = H::new();
    h.logon();
    h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    h.send(&format!("35=D|34=3|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    let a = h.send(&format!("35=D|34=2|43=Y|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    has(&sends(&a)[0], "35=3|45=2|371=122|372=D|373=1");
    // too-low message: the expected number did not move
    assert_eq!(h.s.next_target_seq(), 4);
    // in-sequence PossDup without 122: reject and increment
    let a = h.send(&format!("35=D|34=4|43=Y|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    has(&sends(&a)[0], "35=3|45=4|371=122|373=1");
    assert_eq!(h.s.next_target_seq(), 5);
}

#[test]
fn tc2h_begin_string_as_expected() {
    tc2a_msg_seq_num_correct();
}

#[test]
fn tc2i_begin_string_unexpected_logout() {
    let mut h = H::new();
    h.logon();
    let f = frame("FIX.4.1", "35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=id|", h.now);
    let a = h.raw(&f);
    has(&sends(&a)[0], "35=5|58=Incorrect BeginString");
    assert_eq!(h.s.state(), State::LogoutSent);
    // the counterparty does not answer: disconnect after the logout timeout
    let a = h.advance(6.0);
    assert_eq!(disconnect(&a), Some(DisconnectReason::LogoutTimeout));
}

#[test]
fn tc2j_comp_ids_as_expected() {
    tc2a_msg_seq_num_correct();
}

#[test]
fn tc2k_comp_id_does_not_match_profile() {
    for hdr in ["49=WT|52=<TIME>|56=ISLD", "49=TW|52=<TIME>|56=DLSI", "49=WT|52=<TIME>|56=DLSI"] {
        let mut h = H::new();
        h.logon();
        let a = h.send(&format!("35=D|34=2|{hdr}|{NOS}"));
        let s = sends(&a);
        has(&s[0], "35=3|45=2|372=D|373=9|58=CompID problem");
        has(&s[1], "35=5");
        assert!(delivered(&a).is_empty());
        assert_eq!(h.s.next_target_seq(), 3);
    }
}

#[test]
fn tc2m_body_length_incorrect_is_ignored() {
    let mut h = H::new();
    h.logon();
    // BodyLength 5 too large: the frame swallows the start of the next one
    // and fails; the stream resynchronises on the following message.
    let good = frame("FIX.4.4", "35=0|34=2|49=TW|52=<TIME>|56=ISLD|", h.now);
    let s = String::from_utf8(good.clone()).unwrap();
    let (pre, rest) = s.split_once("\x019=").unwrap();
    let (len, post) = rest.split_once('\x01').unwrap();
    let bad = format!("{pre}\x019={}\x01{post}", len.parse::<usize>().unwrap() + 5);
    let a = h.raw(bad.as_bytes());
    assert!(sends(&a).is_empty());
    let a = h.raw(&good);
    assert!(a.iter().any(|x| matches!(x, Action::Event(SessionEvent::Garbled(_)))));
    assert_eq!(h.s.next_target_seq(), 3, "{a:?}");
    // too short
    let bad = format!("{pre}\x019={}\x01{post}", len.parse::<usize>().unwrap() - 3);
    h.raw(bad.as_bytes());
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc2n_sending_time_within_tolerance() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=0|34=2|49=TW|52=<TIME-119>|56=ISLD|");
    assert!(sends(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc2o_sending_time_out_of_range() {
    for t in ["<TIME-121>", "<TIME+121>"] {
        let mut h = H::new();
        h.logon();
        let a = h.send(&format!("35=0|34=2|49=TW|52={t}|56=ISLD|"));
        let s = sends(&a);
        has(&s[0], "35=3|45=2|58=SendingTime accuracy problem|372=0|373=10");
        has(&s[1], "35=5");
        assert_eq!(h.s.next_target_seq(), 3);
    }
}

#[test]
fn tc2q_msg_type_not_valid() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=*|34=2|49=TW|52=<TIME>|56=ISLD|");
    has(&sends(&a)[0], "35=3|45=2|58=Invalid MsgType|372=*|373=11");
    let a = h.send("35=ZZ|34=3|49=TW|52=<TIME>|56=ISLD|");
    has(&sends(&a)[0], "35=3|45=3|372=ZZ|373=11");
    assert_eq!(h.s.next_target_seq(), 4);
}

#[test]
fn tc2r_msg_type_valid_but_unsupported() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=8|34=2|49=TW|52=<TIME>|56=ISLD|37=id|17=id|150=0|39=0|55=WLRI|54=1|151=100|14=0|6=0.0|");
    has(&sends(&a)[0], "35=j|45=2|58=Unsupported Message Type|372=8|380=3");
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc2t_first_three_fields_out_of_order_ignored() {
    let mut h = H::new();
    h.logon();
    let a = h.raw(b"35=0\x018=FIX.4.4\x019=29\x0134=2\x0149=TW\x0156=ISLD\x0110=121\x01");
    assert!(sends(&a).is_empty());
    let f = {
        // 34 second, 35 third: BodyLength/CheckSum right, order wrong
        let body = format!("34=2\x0135=0\x0149=TW\x0152={}\x0156=ISLD\x01", h.now.to_fix_string());
        let mut v = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
        let cs = checksum(&v);
        v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
        v
    };
    let a = h.raw(&f);
    assert!(sends(&a).is_empty());
    let a = h.send("35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|34=2|112=HELLO");
}

// ---- 3: trailer -----------------------------------------------------------

#[test]
fn tc3b_invalid_checksum_ignored() {
    tc2d_garbled_message_ignored();
}

#[test]
fn tc3c_garbled_message_ignored() {
    let mut h = H::new();
    h.logon();
    let a = h.raw(b"\x01\x01garbage 8=FIX.4.4 junk\x01\x01");
    assert!(sends(&a).is_empty());
    let a = h.send("35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|112=HELLO");
}

// ---- 4-6: heartbeats and test requests ------------------------------------

#[test]
fn tc4a_no_data_sent_during_heart_bt_int_sends_heartbeat() {
    let mut h = H::new();
    h.logon();
    assert_eq!(h.s.next_deadline(), Some(h.now.add_secs(30)));
    assert!(sends(&h.advance(29.0)).is_empty());
    let a = h.send("35=0|34=2|49=TW|52=<TIME>|56=ISLD|");
    assert!(sends(&a).is_empty());
    let a = h.advance(1.0);
    has(&sends(&a)[0], "35=0|34=2");
    lacks(&sends(&a)[0], 112);
}

#[test]
fn tc4b_test_request_answered_with_heartbeat() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|34=2|112=HELLO");
}

#[test]
fn tc5_receive_heartbeat_accepted() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=0|34=2|49=TW|52=<TIME>|56=ISLD|");
    assert!(a.is_empty());
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc6_send_test_request_and_disconnect_without_answer() {
    let mut h = H::new();
    h.logon();
    // the client stays silent; we heartbeat at 30 s, test-request at 36 s
    has(&sends(&h.advance(30.0))[0], "35=0");
    let a = h.advance(6.0);
    has(&sends(&a)[0], "35=1|112=TEST1");
    // an answer clears the pending TestRequest
    h.send("35=0|34=2|49=TW|52=<TIME>|56=ISLD|112=TEST1|");
    assert!(disconnect(&h.advance(30.0)).is_none());
    let a = h.advance(6.0);
    has(&sends(&a)[0], "35=1|112=TEST2");
    let a = h.advance(36.0);
    assert_eq!(disconnect(&a), Some(DisconnectReason::TestRequestTimeout));
}

// ---- 7-8: reject, resend --------------------------------------------------

#[test]
fn tc7_receive_reject_increments_and_continues() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=3|34=2|49=TW|52=<TIME>|56=ISLD|45=1|373=5|");
    assert!(sends(&a).is_empty());
    assert!(a.iter().any(|x| matches!(x, Action::Event(SessionEvent::RejectReceived { ref_seq: Some(1) }))));
    assert_eq!(h.s.next_target_seq(), 3);
}

fn echo_order(h: &mut H, seq: u64, sym: &str) {
    let a = h.send(&format!("35=D|34={seq}|49=TW|52=<TIME>|56=ISLD|11=ID|21=3|40=1|54=1|55={sym}|60=<TIME>|"));
    assert_eq!(delivered(&a), vec![seq]);
    let mut out = Vec::new();
    h.s.send_app(b"D", h.now, &mut out, |e| {
        e.str(11, b"ID").str(21, b"3").str(40, b"1").str(54, b"1").str(55, sym.as_bytes());
    })
    .unwrap();
}

/// QuickFIX's 8_AdminAndApplicationMessages: admin 2-4, app 5-6, admin
/// 7-8, app 9.
fn tc8_setup() -> H {
    let mut h = H::new();
    h.logon();
    for s in 2..=4 {
        h.send(&format!("35=1|34={s}|49=TW|52=<TIME>|56=ISLD|112=HELLO|"));
    }
    echo_order(&mut h, 5, "INTC");
    echo_order(&mut h, 6, "CDG");
    for s in 7..=8 {
        h.send(&format!("35=1|34={s}|49=TW|52=<TIME>|56=ISLD|112=HELLO|"));
    }
    echo_order(&mut h, 9, "IVP");
    assert_eq!(h.s.next_sender_seq(), 10);
    h
}

#[test]
fn tc8_resend_request_admin_messages_only() {
    let mut h = tc8_setup();
    let a = h.send("35=2|34=10|49=TW|52=<TIME>|56=ISLD|7=2|16=4|");
    let s = sends(&a);
    assert_eq!(s.len(), 1);
    has(&s[0], "35=4|34=2|43=Y|123=Y|36=5");
    assert!(get(&s[0], 122).is_some());
}

#[test]
fn tc8_resend_request_admin_and_application_messages() {
    let mut h = tc8_setup();
    let t0 = h.now;
    h.now = h.now.add_secs(1);
    let a = h.send("35=2|34=10|49=TW|52=<TIME>|56=ISLD|7=2|16=9|");
    let s = sends(&a);
    assert_eq!(s.len(), 5);
    has(&s[0], "35=4|34=2|43=Y|123=Y|36=5");
    has(&s[1], "35=D|34=5|43=Y|55=INTC|11=ID");
    has(&s[1], &format!("122={}|52={}", t0.to_fix_string(), h.now.to_fix_string()));
    has(&s[2], "35=D|34=6|43=Y|55=CDG");
    has(&s[3], "35=4|34=7|123=Y|36=9");
    has(&s[4], "35=D|34=9|43=Y|55=IVP");
    // the resent frames are themselves valid FIX with one header
    for f in &s {
        assert_eq!(fields(f).iter().filter(|(t, _)| *t == 34).count(), 1);
    }
}

#[test]
fn tc8_resend_request_to_infinity_and_sequence_continues() {
    let mut h = tc8_setup();
    let a = h.send("35=2|34=10|49=TW|52=<TIME>|56=ISLD|7=2|16=0|");
    assert_eq!(sends(&a).len(), 5);
    // gap fills and resends do not consume new sequence numbers
    let a = h.send("35=1|34=11|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|34=10");
}

#[test]
fn tc8_resend_request_absurd_range_rejected() {
    let mut cfg = config();
    cfg.max_resend_range = 1000;
    let mut h = H::with(cfg, MemoryStore::new(), Box::new(AllowAll));
    h.logon();
    h.s.store_mut().set_next_sender_seq(5000).unwrap();
    let a = h.send("35=2|34=2|49=TW|52=<TIME>|56=ISLD|7=1|16=4000|");
    has(&sends(&a)[0], "35=3|45=2|371=16|372=2|373=5");
    let a = h.send("35=2|34=3|49=TW|52=<TIME>|56=ISLD|7=999999|16=0|");
    has(&sends(&a)[0], "35=3|45=3|371=7|373=5");
}

// ---- 10-11: sequence reset ------------------------------------------------

#[test]
fn tc10a_gap_fill_msg_seq_num_too_high_requests_resend() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=10|49=TW|52=<TIME>|56=ISLD|36=20|123=Y|");
    has(&sends(&a)[0], "35=2|7=2|16=0");
    let a = h.send("35=1|34=20|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    assert!(sends(&a).is_empty(), "no second ResendRequest");
}

#[test]
fn tc10b_gap_fill_msg_seq_num_equal() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=2|49=TW|52=<TIME>|56=ISLD|36=20|123=Y|");
    assert!(sends(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 20);
}

#[test]
fn tc10c_gap_fill_too_low_with_poss_dup_ignored() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=1|49=TW|52=<TIME>|56=ISLD|43=Y|122=<TIME-1>|36=20|123=Y|");
    assert!(sends(&a).is_empty());
    let a = h.send("35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|112=HELLO");
}

#[test]
fn tc10d_gap_fill_too_low_without_poss_dup_logout() {
    let mut h = H::new();
    h.logon();
    h.send("35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    let a = h.send("35=4|34=1|49=TW|52=<TIME>|56=ISLD|36=20|123=Y|");
    has(&sends(&a)[0], "35=5|58=MsgSeqNum too low, expecting 3 but received 1");
    assert!(disconnect(&a).is_some());
}

#[test]
fn tc10e_gap_fill_new_seq_no_not_greater_rejected() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=2|49=TW|52=<TIME>|56=ISLD|36=2|123=Y|");
    has(&sends(&a)[0], "35=3|45=2|371=36|372=4|373=5");
    assert_eq!(h.s.next_target_seq(), 3);
}

#[test]
fn tc11a_sequence_reset_new_seq_no_greater() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=0|49=TW|52=<TIME>|56=ISLD|36=20|");
    assert!(sends(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 20);
    let a = h.send("35=1|34=20|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|112=HELLO");
}

#[test]
fn tc11b_sequence_reset_new_seq_no_equal() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=0|49=TW|52=<TIME>|56=ISLD|36=2|123=N|");
    assert!(sends(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 2);
}

#[test]
fn tc11c_sequence_reset_new_seq_no_less_rejected() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=4|34=0|49=TW|52=<TIME>|56=ISLD|36=1|");
    has(&sends(&a)[0], "35=3|45=0|372=4|373=5|58=Value is incorrect (out of range) for this tag");
    assert_eq!(h.s.next_target_seq(), 2);
    let a = h.send("35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=HELLO|");
    has(&sends(&a)[0], "35=0|34=3|112=HELLO");
}

// ---- 12-13: logout --------------------------------------------------------

#[test]
fn tc12_initiate_logout_answered() {
    let mut h = H::new();
    h.logon();
    let mut out = Vec::new();
    h.s.logout(Some("end of day"), h.now, &mut out);
    has(&sends(&out)[0], "35=5|58=end of day");
    assert_eq!(h.s.state(), State::LogoutSent);
    // messages keep being processed while waiting
    let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert_eq!(delivered(&a), vec![2]);
    let a = h.send("35=5|34=3|49=TW|52=<TIME>|56=ISLD|");
    assert!(sends(&a).is_empty());
    assert_eq!(disconnect(&a), Some(DisconnectReason::LogoutCompleted));
}

#[test]
fn tc12_initiate_logout_not_answered_times_out() {
    let mut h = H::new();
    h.logon();
    let mut out = Vec::new();
    h.s.logout(None, h.now, &mut out);
    assert!(disconnect(&h.advance(4.0)).is_none());
    assert_eq!(disconnect(&h.advance(1.0)), Some(DisconnectReason::LogoutTimeout));
}

#[test]
fn tc13b_unsolicited_logout_answered() {
    let mut h = H::new();
    h.logon();
    let a = h.send("35=5|34=2|49=TW|52=<TIME>|56=ISLD|");
    has(&sends(&a)[0], "35=5|34=2");
    assert_eq!(disconnect(&a), Some(DisconnectReason::LogoutByPeer));
    assert_eq!(h.s.state(), State::Disconnected);
}

// ---- 14: errors in received messages -------------------------------------

fn reject_case(body: &str, want: &str) {
    let mut h = H::new();
    h.logon();
    let a = h.send(body);
    let s = sends(&a);
    assert_eq!(s.len(), 1, "{a:?}");
    has(&s[0], want);
    assert!(delivered(&a).is_empty());
    assert_eq!(h.s.next_target_seq(), 3, "inbound MsgSeqNum incremented");
}

#[test]
fn tc14a_invalid_tag_number() {
    for (t, q) in [("999", "999"), ("0", "0"), ("-1", "-1")] {
        reject_case(
            &format!("35=0|34=2|49=TW|52=<TIME>|56=ISLD|{t}=HI|"),
            &format!("35=3|45=2|58=Invalid tag number|371={q}|372=0|373=0"),
        );
    }
    // user-defined range, not in the dictionary
    reject_case("35=0|34=2|49=TW|52=<TIME>|56=ISLD|5000=HI|", "35=3|371=5000|373=3");
}

#[test]
fn tc14b_required_tag_missing() {
    reject_case("35=0|34=2|49=TW|52=<TIME>|", "35=3|45=2|58=Required tag missing|371=56|372=0|373=1");
    reject_case("35=D|49=TW|34=2|56=ISLD|52=<TIME>|40=1|60=<TIME>|55=X|21=3|11=id|", "35=3|45=2|371=54|372=D|373=1");
}

#[test]
fn tc14c_tag_not_defined_for_message_type() {
    reject_case(
        "35=0|34=2|49=TW|52=<TIME>|56=ISLD|55=SYM|",
        "35=3|45=2|58=Tag not defined for this message type|371=55|372=0|373=2",
    );
}

#[test]
fn tc14d_tag_specified_without_value() {
    reject_case(
        "35=0|34=2|49=TW|52=<TIME>|56=ISLD|112=|",
        "35=3|45=2|58=Tag specified without a value|371=112|372=0|373=4",
    );
}

#[test]
fn tc14e_incorrect_enum_value() {
    reject_case(
        "35=D|34=2|49=TW|52=<TIME>|56=ISLD|11=ID|21=4|40=1|54=1|55=INTC|60=<TIME>|",
        "35=3|45=2|371=21|372=D|373=5",
    );
}

#[test]
fn tc14f_incorrect_data_format() {
    reject_case(
        "35=D|34=2|49=TW|52=<TIME>|56=ISLD|11=ID|21=1|40=1|54=1|55=INTC|38=+200|60=<TIME>|",
        "35=3|45=2|58=Incorrect data format for value|371=38|372=D|373=6",
    );
    reject_case(
        "35=D|34=2|49=TW|52=<TIME>|56=ISLD|11=ID|21=1|40=1|54=1|55=INTC|60=20240101 00:00|",
        "35=3|371=60|373=6",
    );
}

#[test]
fn tc14g_header_body_trailer_out_of_order() {
    reject_case(
        "35=D|11=id|21=3|40=1|54=1|55=MSFT|60=<TIME>|34=2|49=TW|52=<TIME>|56=ISLD|",
        "35=3|45=2|58=Tag specified out of required order|371=34|372=D|373=14",
    );
    reject_case("35=D|55=MSFT|34=2|49=TW|52=<TIME>|56=ISLD|11=id|21=3|40=1|54=1|60=<TIME>|", "35=3|371=34|373=14");
}

#[test]
fn tc14h_tag_appears_more_than_once() {
    reject_case(
        "35=D|34=2|49=TW|52=<TIME>|56=ISLD|11=ID|21=1|40=1|40=2|54=1|38=200.00|55=INTC|60=<TIME>|",
        "35=3|45=2|58=Tag appears more than once|371=40|372=D|373=13",
    );
}

#[test]
fn tc14i_repeating_group_count_not_equal() {
    reject_case(
        "35=D|34=2|49=TW|52=<TIME>|56=ISLD|11=ID|21=1|40=1|54=1|38=200.00|55=INTC|386=3|336=PRE-OPEN|336=AFTER-HOURS|60=<TIME>|",
        "35=3|45=2|58=Incorrect NumInGroup count for repeating group|371=386|372=D|373=16",
    );
}

#[test]
fn tc14j_repeating_group_fields_out_of_order() {
    reject_case(
        "35=D|34=2|49=TW|52=<TIME>|56=ISLD|11=ID|21=1|40=1|54=1|55=INTC|60=<TIME>|453=1|447=D|448=P|",
        "35=3|45=2|58=Repeating group fields out of order|371=447|372=D|373=15",
    );
}

// ---- 15-21 ----------------------------------------------------------------

#[test]
fn tc15_header_and_body_fields_ordered_differently() {
    let mut h = H::new();
    h.logon();
    let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert_eq!(delivered(&a), vec![2]);
    let a = h.send("35=D|49=TW|34=3|56=ISLD|52=<TIME>|40=1|55=MSFT|60=<TIME>|54=1|21=3|11=id|");
    assert_eq!(delivered(&a), vec![3]);
}

#[test]
fn tc16_messages_sent_while_disconnected_are_queued_for_resend() {
    let mut h = H::new();
    h.logon();
    h.s.on_disconnected(h.now);
    let mut out = Vec::new();
    let seq =
        h.s.send_app(b"8", h.now, &mut out, |e| {
            e.str(37, b"O1").str(17, b"E1").str(150, b"4").str(39, b"4");
        })
        .unwrap();
    assert_eq!(seq, 2);
    assert!(out.is_empty(), "nothing is written while disconnected");
    h.s.on_connect(h.now).unwrap();
    let a = h.send("35=A|34=2|49=TW|52=<TIME>|56=ISLD|98=0|108=30|");
    has(&sends(&a)[0], "35=A|34=3");
    // the client sees 3 while expecting 2 and asks for a resend
    let a = h.send("35=2|34=3|49=TW|52=<TIME>|56=ISLD|7=2|16=0|");
    let s = sends(&a);
    has(&s[0], "35=8|34=2|43=Y|37=O1");
    has(&s[1], "35=4|34=3|123=Y|36=4");
}

#[test]
fn tc19_poss_resend_delivered_with_flag() {
    let mut h = H::new();
    h.logon();
    let a = h.send(&format!("35=D|34=2|97=Y|49=TW|52=<TIME>|56=ISLD|{NOS}"));
    assert!(matches!(&a[..], [Action::Deliver(m)] if m.poss_resend && !m.poss_dup));
}

#[test]
fn tc20_simultaneous_resend_request() {
    let mut h = H::new();
    h.logon();
    echo_order(&mut h, 2, "INTC");
    echo_order(&mut h, 3, "INTC");
    // the client jumps to 7: we ask for 4..
    let a = h.send("35=0|34=7|49=TW|52=<TIME>|56=ISLD|");
    has(&sends(&a)[0], "35=2|34=4|7=4|16=0");
    // ...while the client asks us for 2..3 with a too-high MsgSeqNum
    let a = h.send("35=2|34=8|49=TW|52=<TIME>|56=ISLD|7=2|16=3|");
    let s = sends(&a);
    assert_eq!(s.len(), 2);
    has(&s[0], "35=D|34=2|43=Y");
    has(&s[1], "35=D|34=3|43=Y");
    for seq in 4..=6 {
        h.send(&format!("35=0|34={seq}|43=Y|49=TW|52=<TIME>|122=<TIME>|56=ISLD|"));
    }
    // 7 (queued heartbeat) and 8 (answered ResendRequest) are consumed
    assert_eq!(h.s.next_target_seq(), 9);
    let a = h.send("35=5|34=9|49=TW|52=<TIME>|56=ISLD|");
    has(&sends(&a)[0], "35=5|34=5");
}

#[test]
fn tc21_repeating_group_with_count_zero() {
    let mut h = H::new();
    h.logon();
    let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}386=0|453=0|"));
    assert_eq!(delivered(&a), vec![2]);
}

// ---- beyond the numbered cases --------------------------------------------

#[test]
fn restart_with_file_store_keeps_sequence_numbers_and_resend() {
    let dir = tempfile::tempdir().unwrap();
    let open = || FileStore::open(dir.path(), "ISLD-TW", FsyncPolicy::OsBuffered).unwrap();
    {
        let mut h = H::with(config(), open(), Box::new(AllowAll));
        h.logon();
        let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
        assert_eq!(delivered(&a), vec![2]);
        let mut out = Vec::new();
        h.s.send_app(b"8", h.now, &mut out, |e| {
            e.str(37, b"O1").str(17, b"E1").str(150, b"0").str(39, b"0");
        })
        .unwrap();
        // The order layer finished message 2.
        h.s.store_mut().release_inbound(2);
        h.s.store_mut().flush_marks().unwrap();
        // gateway dies here: no logout
    }
    let mut h = H::with(config(), open(), Box::new(AllowAll));
    assert_eq!((h.s.next_sender_seq(), h.s.next_target_seq()), (3, 3));
    let a = h.send("35=A|34=3|49=TW|52=<TIME>|56=ISLD|98=0|108=30|");
    has(&sends(&a)[0], "35=A|34=3");
    let a = h.send("35=2|34=4|49=TW|52=<TIME>|56=ISLD|7=1|16=0|");
    let s = sends(&a);
    has(&s[0], "35=4|34=1|123=Y|36=2");
    has(&s[1], "35=8|34=2|43=Y|37=O1");
    has(&s[2], "35=4|34=3|123=Y|36=4");
}

#[test]
fn messages_split_across_reads_and_batched() {
    let mut h = H::new();
    let logon = frame("FIX.4.4", "35=A|34=1|49=TW|52=<TIME>|56=ISLD|98=0|108=30|", h.now);
    let hb = frame("FIX.4.4", "35=1|34=2|49=TW|52=<TIME>|56=ISLD|112=X|", h.now);
    let mut all = logon.clone();
    all.extend_from_slice(&hb);
    let mut out = Vec::new();
    for b in all.chunks(7) {
        h.s.on_bytes(b, h.now, &mut out);
    }
    let s = sends(&out);
    assert_eq!(s.len(), 2);
    has(&s[1], "35=0|112=X");
}

#[test]
fn an_unfinished_application_message_is_asked_for_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || FileStore::open(dir.path(), "ISLD-TW", FsyncPolicy::OsBuffered).unwrap();
    {
        let mut h = H::with(config(), open(), Box::new(AllowAll));
        h.logon();
        let a = h.send(&format!("35=D|34=2|49=TW|52=<TIME>|56=ISLD|{NOS}"));
        assert_eq!(delivered(&a), vec![2]);
        h.send("35=0|34=3|49=TW|52=<TIME>|56=ISLD|");
        assert_eq!(h.s.next_target_seq(), 4, "in memory the session moves on");
        // gateway dies before the order layer finished message 2
    }
    let mut h = H::with(config(), open(), Box::new(AllowAll));
    assert_eq!(h.s.next_target_seq(), 2, "message 2 is expected again");
    let a = h.send("35=A|34=4|49=TW|52=<TIME>|56=ISLD|98=0|108=30|");
    let s = sends(&a);
    has(&s[0], "35=A|34=2");
    has(&s[1], "35=2|34=3|7=2|16=0");
    let a = h.send(&format!("35=D|34=2|43=Y|49=TW|52=<TIME>|56=ISLD|122=<TIME>|{NOS}"));
    assert_eq!(delivered(&a), vec![2], "the resent copy reaches the order layer");
}
