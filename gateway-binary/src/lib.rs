//! SBE order entry over TCP with a FIXP-style session, for market makers. Not built yet.
