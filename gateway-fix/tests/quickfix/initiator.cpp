// QuickFIX C++ initiator for the interop test (tests/quickfix_interop.rs).
// Logs on to the Castle gateway, sends orders, a replace, cancels, a
// self-crossing order that trades, and checks every execution report it
// receives. Prints one line per application message; exits 0 when every
// expectation held. QuickFIX 1.15 headers need -std=gnu++14 at most.
// Built twice by the test: as is for FIX 4.4, with -DCASTLE_FIX42 for a
// FIX 4.2 session (4.2 message classes, HandlInst, fills as ExecType 1/2).
#include <quickfix/Application.h>
#include <quickfix/FileLog.h>
#include <quickfix/FileStore.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>
#ifdef CASTLE_FIX42
#include <quickfix/fix42/NewOrderSingle.h>
#include <quickfix/fix42/OrderCancelReplaceRequest.h>
#include <quickfix/fix42/OrderCancelRequest.h>
namespace V = FIX42;
#define HANDL FIX::HandlInst('1'),
#define SYM(s) FIX::Symbol(s),
static const char* PARTIAL = "1";
static const char* FILLED = "2";
#else
#include <quickfix/fix44/NewOrderSingle.h>
#include <quickfix/fix44/OrderCancelReplaceRequest.h>
#include <quickfix/fix44/OrderCancelRequest.h>
namespace V = FIX44;
#define HANDL
#define SYM(s)
static const char* PARTIAL = "F";
static const char* FILLED = "F";
#endif

#include <chrono>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <string>

struct App : public FIX::Application {
  std::mutex m;
  std::condition_variable cv;
  std::deque<FIX::Message> inbox;
  bool loggedOn = false;
  int sessionRejects = 0;
  FIX::SessionID sid;

  void onCreate(const FIX::SessionID&) {}
  void onLogon(const FIX::SessionID& s) {
    std::lock_guard<std::mutex> g(m);
    loggedOn = true;
    sid = s;
    cv.notify_all();
  }
  void onLogout(const FIX::SessionID&) {}
  void toAdmin(FIX::Message& msg, const FIX::SessionID&) {
#ifndef CASTLE_FIX42  // 4.2 has no Username/Password in its Logon
    if (msg.getHeader().getField(FIX::FIELD::MsgType) == "A") {
      msg.setField(553, "desk");
      msg.setField(554, "pw");
    }
#endif
  }
  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) {}
  void fromAdmin(const FIX::Message& msg, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::RejectLogon) {
    if (msg.getHeader().getField(FIX::FIELD::MsgType) == "3") {
      std::lock_guard<std::mutex> g(m);
      sessionRejects++;
      std::cout << "SESSION-REJECT " << msg.toString() << std::endl;
    }
  }
  void fromApp(const FIX::Message& msg, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::UnsupportedMessageType) {
    std::lock_guard<std::mutex> g(m);
    inbox.push_back(msg);
    cv.notify_all();
  }
};

static std::string f(const FIX::Message& m, int tag) {
  return m.isSetField(tag) ? m.getField(tag) : std::string("-");
}

static int failures = 0;

// Wait for the next application message and check its type and fields.
static bool expect(App& app, const std::string& type, const std::string& cl, const std::string& execType,
                   const std::string& ordStatus) {
  std::unique_lock<std::mutex> lk(app.m);
  if (!app.cv.wait_for(lk, std::chrono::seconds(10), [&] { return !app.inbox.empty(); })) {
    std::cout << "FAIL timeout waiting for " << type << " " << cl << " " << execType << std::endl;
    failures++;
    return false;
  }
  FIX::Message msg = app.inbox.front();
  app.inbox.pop_front();
  std::string mt = msg.getHeader().getField(FIX::FIELD::MsgType);
  std::string line = (mt == "8" ? "ER" : mt == "9" ? "CXLREJ" : "MSG" + mt);
  std::cout << line << " 11=" << f(msg, 11) << " 41=" << f(msg, 41) << " 37=" << f(msg, 37) << " 150=" << f(msg, 150)
            << " 39=" << f(msg, 39) << " 38=" << f(msg, 38) << " 44=" << f(msg, 44) << " 14=" << f(msg, 14)
            << " 151=" << f(msg, 151) << " 6=" << f(msg, 6) << " 31=" << f(msg, 31) << " 32=" << f(msg, 32)
            << " 434=" << f(msg, 434) << " 102=" << f(msg, 102) << std::endl;
  bool ok = mt == type && f(msg, 11) == cl && (execType.empty() || f(msg, 150) == execType) &&
            (ordStatus.empty() || f(msg, 39) == ordStatus);
  if (!ok) {
    std::cout << "FAIL expected " << type << " 11=" << cl << " 150=" << execType << " 39=" << ordStatus << std::endl;
    failures++;
  }
  return ok;
}

static void send(App& app, FIX::Message& m) {
  FIX::Session::sendToTarget(m, app.sid);
}

static V::NewOrderSingle order(const std::string& cl, char side, double qty, double px, char tif) {
  V::NewOrderSingle o(FIX::ClOrdID(cl), HANDL SYM("BTC-USDT") FIX::Side(side), FIX::TransactTime(),
                      FIX::OrdType(FIX::OrdType_LIMIT));
  o.set(FIX::Symbol("BTC-USDT"));
  o.set(FIX::OrderQty(qty));
  o.set(FIX::Price(px));
  o.set(FIX::TimeInForce(tif));
  return o;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: initiator settings.cfg" << std::endl;
    return 2;
  }
  try {
    FIX::SessionSettings settings(argv[1]);
    App app;
    FIX::FileStoreFactory store(settings);
    FIX::FileLogFactory log(settings);
    FIX::SocketInitiator initiator(app, store, settings, log);
    initiator.start();
    {
      std::unique_lock<std::mutex> lk(app.m);
      if (!app.cv.wait_for(lk, std::chrono::seconds(15), [&] { return app.loggedOn; })) {
        std::cout << "FAIL no logon" << std::endl;
        initiator.stop();
        return 1;
      }
    }
    std::cout << "LOGON" << std::endl;

    // 1. A resting GTC limit buy.
    V::NewOrderSingle o1 = order("Q1", FIX::Side_BUY, 0.5, 59000, FIX::TimeInForce_GOOD_TILL_CANCEL);
    send(app, o1);
    expect(app, "8", "Q1", "0", "0");

    // 2. Replace it: new price and quantity.
    V::OrderCancelReplaceRequest r(FIX::OrigClOrdID("Q1"), FIX::ClOrdID("Q2"), HANDL SYM("BTC-USDT")
                                       FIX::Side(FIX::Side_BUY), FIX::TransactTime(),
                                       FIX::OrdType(FIX::OrdType_LIMIT));
    r.set(FIX::Symbol("BTC-USDT"));
    r.set(FIX::OrderQty(0.3));
    r.set(FIX::Price(59001));
    send(app, r);
    expect(app, "8", "Q2", "5", "0");

    // 3. A sell that crosses our own bid, self-trades allowed (7928=A): a trade.
    V::NewOrderSingle o3 = order("Q3", FIX::Side_SELL, 0.1, 59001, FIX::TimeInForce_GOOD_TILL_CANCEL);
    o3.setField(7928, "A");
    send(app, o3);
    expect(app, "8", "Q3", "0", "0");
    expect(app, "8", "Q2", PARTIAL, "1");
    expect(app, "8", "Q3", FILLED, "2");

    // 4. Cancel the rest of the bid.
    V::OrderCancelRequest c(FIX::OrigClOrdID("Q2"), FIX::ClOrdID("Q4"), SYM("BTC-USDT") FIX::Side(FIX::Side_BUY),
                            FIX::TransactTime());
    c.set(FIX::Symbol("BTC-USDT"));
    send(app, c);
    expect(app, "8", "Q4", "4", "4");

    // 5. Cancel it again: OrderCancelReject, unknown order.
    V::OrderCancelRequest c2(FIX::OrigClOrdID("Q4"), FIX::ClOrdID("Q5"), SYM("BTC-USDT") FIX::Side(FIX::Side_BUY),
                             FIX::TransactTime());
    c2.set(FIX::Symbol("BTC-USDT"));
    send(app, c2);
    expect(app, "9", "Q5", "", "");

    // 6. An IOC that cannot fill: new, then canceled.
    V::NewOrderSingle o6 = order("Q6", FIX::Side_BUY, 0.1, 58000, FIX::TimeInForce_IMMEDIATE_OR_CANCEL);
    send(app, o6);
    expect(app, "8", "Q6", "0", "0");
    expect(app, "8", "Q6", "4", "4");

    // 7. An unknown symbol: ExecutionReport rejected.
    V::NewOrderSingle o7 = order("Q7", FIX::Side_BUY, 0.1, 58000, FIX::TimeInForce_DAY);
    o7.set(FIX::Symbol("NOPE"));
    send(app, o7);
    expect(app, "8", "Q7", "8", "8");

    int rejects;
    {
      std::lock_guard<std::mutex> g(app.m);
      rejects = app.sessionRejects;
    }
    initiator.stop();
    if (rejects > 0) {
      std::cout << "FAIL " << rejects << " session-level rejects" << std::endl;
      failures++;
    }
    std::cout << (failures == 0 ? "DONE OK" : "DONE FAILED") << std::endl;
    return failures == 0 ? 0 : 1;
  } catch (std::exception& e) {
    std::cout << "FAIL exception " << e.what() << std::endl;
    return 1;
  }
}
