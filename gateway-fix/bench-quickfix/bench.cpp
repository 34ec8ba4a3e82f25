// QuickFIX C++ baseline for gateway-fix/benches/codec.rs: the same
// NewOrderSingle and ExecutionReport, parsed+validated with FIX::Message and
// FIX::DataDictionary, and encoded by building a FIX::Message and calling
// toString() (what QuickFIX's Session::send does).
//
// Build and run: ./run.sh   (needs libquickfix-dev; see README in run.sh)
#include <quickfix/DataDictionary.h>
#include <quickfix/Message.h>
#include <quickfix/FieldConvertors.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

static std::string frame(std::string body) {
  for (auto& c : body) if (c == '|') c = '\x01';
  std::string m = "8=FIX.4.4\x01" "9=" + std::to_string(body.size()) + "\x01" + body;
  unsigned sum = 0;
  for (unsigned char c : m) sum += c;
  char cs[8];
  snprintf(cs, sizeof cs, "10=%03u\x01", sum % 256);
  return m + cs;
}

static const char* NOS_BODY =
    "35=D|34=1234|49=CLIENT1|52=20240101-12:00:00.123|56=CASTLE|"
    "11=ORD-000123|1=ACC1|21=1|55=BTC-USD|54=1|60=20240101-12:00:00.123|38=0.5|40=2|44=43250.50|59=1|";
static const char* ER_BODY =
    "35=8|34=5678|49=CASTLE|52=20240101-12:00:00.124|56=CLIENT1|"
    "37=O-98765|11=ORD-000123|17=E-445566|150=F|39=2|1=ACC1|55=BTC-USD|54=1|38=0.5|40=2|44=43250.50|"
    "59=1|32=0.5|31=43250.50|151=0|14=0.5|6=43250.50|60=20240101-12:00:00.124|";

template <class F>
static double median_ns(F f, long iters) {
  std::vector<double> runs;
  for (int r = 0; r < 11; r++) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; i++) f();
    auto t1 = std::chrono::steady_clock::now();
    runs.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / iters);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

static void report(const char* name, double ns) {
  printf("%-34s %9.1f ns/msg %12.0f msg/s\n", name, ns, 1e9 / ns);
}

int main(int argc, char** argv) {
  const char* dict = argc > 1 ? argv[1] : "/work/shared/reference/fix/FIX44.xml";
  long iters = argc > 2 ? atol(argv[2]) : 200000;
  FIX::DataDictionary dd(dict);
  volatile size_t sink = 0;
  const std::pair<const char*, const char*> cases[] = {{"NewOrderSingle", NOS_BODY}, {"ExecutionReport", ER_BODY}};
  for (const auto& c : cases) {
    const char* name = c.first;
    const char* body = c.second;
    std::string wire = frame(body);
    FIX::Message msg;
    double ns = median_ns([&] {
      msg.setString(wire, true, &dd);  // parse (checksum/length validated)
      dd.validate(msg);                // dictionary validation (throws on error)
      sink += msg.getHeader().getField(FIX::FIELD::MsgSeqNum).size();
    }, iters);
    report((std::string("quickfix parse_validate/") + name).c_str(), ns);
    ns = median_ns([&] {
      msg.setString(wire, true, &dd);
      sink += msg.getHeader().getField(FIX::FIELD::MsgSeqNum).size();
    }, iters);
    report((std::string("quickfix parse/") + name).c_str(), ns);
  }
  std::string out;
  double ns = median_ns([&] {
    FIX::Message m;
    auto& h = m.getHeader();
    h.setField(FIX::BeginString("FIX.4.4"));
    h.setField(FIX::MsgType("D"));
    h.setField(FIX::MsgSeqNum(1234));
    h.setField(FIX::SenderCompID("CLIENT1"));
    h.setField(FIX::SendingTime(FIX::UtcTimeStamp(), 3));
    h.setField(FIX::TargetCompID("CASTLE"));
    m.setField(FIX::ClOrdID("ORD-000123"));
    m.setField(FIX::Account("ACC1"));
    m.setField(FIX::HandlInst('1'));
    m.setField(FIX::Symbol("BTC-USD"));
    m.setField(FIX::Side('1'));
    m.setField(FIX::TransactTime(FIX::UtcTimeStamp(), 3));
    m.setField(FIX::OrderQty(0.5));
    m.setField(FIX::OrdType('2'));
    m.setField(FIX::Price(43250.50));
    m.setField(FIX::TimeInForce('1'));
    m.toString(out);
    sink += out.size();
  }, iters);
  report("quickfix encode/NewOrderSingle", ns);
  ns = median_ns([&] {
    FIX::Message m;
    auto& h = m.getHeader();
    h.setField(FIX::BeginString("FIX.4.4"));
    h.setField(FIX::MsgType("8"));
    h.setField(FIX::MsgSeqNum(5678));
    h.setField(FIX::SenderCompID("CASTLE"));
    h.setField(FIX::SendingTime(FIX::UtcTimeStamp(), 3));
    h.setField(FIX::TargetCompID("CLIENT1"));
    m.setField(FIX::OrderID("O-98765"));
    m.setField(FIX::ClOrdID("ORD-000123"));
    m.setField(FIX::ExecID("E-445566"));
    m.setField(FIX::ExecType('F'));
    m.setField(FIX::OrdStatus('2'));
    m.setField(FIX::Account("ACC1"));
    m.setField(FIX::Symbol("BTC-USD"));
    m.setField(FIX::Side('1'));
    m.setField(FIX::OrderQty(0.5));
    m.setField(FIX::OrdType('2'));
    m.setField(FIX::Price(43250.50));
    m.setField(FIX::TimeInForce('1'));
    m.setField(FIX::LastQty(0.5));
    m.setField(FIX::LastPx(43250.50));
    m.setField(FIX::LeavesQty(0));
    m.setField(FIX::CumQty(0.5));
    m.setField(FIX::AvgPx(43250.50));
    m.setField(FIX::TransactTime(FIX::UtcTimeStamp(), 3));
    m.toString(out);
    sink += out.size();
  }, iters);
  report("quickfix encode/ExecutionReport", ns);
  return sink == 0;
}
