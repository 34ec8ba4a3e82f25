// Instruction-count baseline (load-independent, unlike bench.cpp's times):
// parse+validate one of the codec benchmark's messages N times with
// QuickFIX, nothing else, so that under callgrind
//   (Ir with N=2000 - Ir with N=0) / 2000
// is QuickFIX's instructions per message. gateway-fix/examples/codec_cost.rs
// is the Castle side. Build and run: ./count.sh (needs libquickfix-dev,
// valgrind).
#include <quickfix/DataDictionary.h>
#include <quickfix/Message.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

static std::string frame(std::string body) {
  for (auto& c : body) if (c == '|') c = '\x01';
  std::string m = "8=FIX.4.4\x01" "9=" + std::to_string(body.size()) + "\x01" + body;
  unsigned sum = 0;
  for (unsigned char c : m) sum += c;
  char cs[8];
  snprintf(cs, sizeof cs, "10=%03u\x01", sum % 256);
  return m + cs;
}

// The same messages as bench.cpp and benches/codec.rs.
static const char* NOS_BODY =
    "35=D|34=1234|49=CLIENT1|52=20240101-12:00:00.123|56=CASTLE|"
    "11=ORD-000123|1=ACC1|21=1|55=BTC-USD|54=1|60=20240101-12:00:00.123|38=0.5|40=2|44=43250.50|59=1|";
static const char* ER_BODY =
    "35=8|34=5678|49=CASTLE|52=20240101-12:00:00.124|56=CLIENT1|"
    "37=O-98765|11=ORD-000123|17=E-445566|150=F|39=2|1=ACC1|55=BTC-USD|54=1|38=0.5|40=2|44=43250.50|"
    "59=1|32=0.5|31=43250.50|151=0|14=0.5|6=43250.50|60=20240101-12:00:00.124|";

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: count FIX44.xml nos|er N\n");
    return 2;
  }
  FIX::DataDictionary dd(argv[1]);
  std::string wire = frame(strcmp(argv[2], "er") == 0 ? ER_BODY : NOS_BODY);
  long n = atol(argv[3]);
  volatile size_t sink = 0;
  FIX::Message msg;
  for (long i = 0; i < n; i++) {
    msg.setString(wire, true, &dd);
    dd.validate(msg);
    sink += msg.getHeader().getField(FIX::FIELD::MsgSeqNum).size();
  }
  printf("%ld messages\n", n);
  return 0;
}
