//! A minimal pcap writer (LINKTYPE_RAW: IPv4 packets), so tests can hand
//! the exact datagrams the feed produced to tshark without capture rights.

use std::io::{self, Write};
use std::net::SocketAddrV4;

pub struct PcapWriter<W: Write> {
    out: W,
    ip_id: u16,
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&65_535u32.to_le_bytes())?;
        out.write_all(&101u32.to_le_bytes())?; // LINKTYPE_RAW
        Ok(PcapWriter { out, ip_id: 0 })
    }

    /// Writes one UDP datagram as an IPv4 packet captured at `ts_ns`.
    pub fn write_udp(&mut self, ts_ns: u64, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        let udp_len = 8 + payload.len();
        let total = 20 + udp_len;
        if total > 65_535 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"));
        }
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut udp = [0u8; 8];
        udp[0..2].copy_from_slice(&src.port().to_be_bytes());
        udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        // UDP checksum 0 = "not computed", legal for IPv4.
        self.out.write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&((ts_ns % 1_000_000_000 / 1_000) as u32).to_le_bytes())?;
        self.out.write_all(&(total as u32).to_le_bytes())?;
        self.out.write_all(&(total as u32).to_le_bytes())?;
        self.out.write_all(&ip)?;
        self.out.write_all(&udp)?;
        self.out.write_all(payload)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}
