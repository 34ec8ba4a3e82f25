-- wrk load for gateway-rest/examples/bench.rs: POST /api/v1/order, every
-- request signed afresh (fresh timestamp, unique client order id), the same
-- request the in-process generator sends. Arguments after `--`: key id,
-- secret, client order id prefix (unique per run, so no id repeats an order
-- the gateway still remembers).
--
-- HMAC-SHA256 comes from the OpenSSL libcrypto wrk itself is linked with,
-- through LuaJIT's FFI (wrk's Lua has no hash functions of its own).
local ffi = require("ffi")
ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
typedef struct { long tv_sec; long tv_usec; } castle_timeval;
int gettimeofday(castle_timeval *tv, void *tz);
]]
local C = ffi.C

local thread_count = 0
function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end

local key, secret, prefix
local path = "/api/v1/order"
local n = 0
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")
local tv = ffi.new("castle_timeval")
local sha256
local hex = {}
for i = 0, 255 do hex[i] = string.format("%02x", i) end
local digits = {}

function init(args)
  key, secret, prefix = args[1], args[2], args[3] .. tostring(tid) .. "-"
  sha256 = C.EVP_sha256()
end

function request()
  n = n + 1
  C.gettimeofday(tv, nil)
  local ts = string.format("%d", tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000))
  local body = '{"symbol":"BTC-USDT","side":"BUY","type":"LIMIT","time_in_force":"IOC","price":"55000",' ..
      '"quantity":"0.01","client_order_id":"' .. prefix .. n .. '"}'
  local payload = ts .. "POST" .. path .. body
  C.HMAC(sha256, secret, #secret, payload, #payload, md, md_len)
  for i = 0, 31 do digits[i + 1] = hex[md[i]] end
  return wrk.format("POST", path, {
    ["x-api-key"] = key,
    ["x-timestamp"] = ts,
    ["x-signature"] = table.concat(digits),
    ["content-type"] = "application/json",
  }, body)
end
