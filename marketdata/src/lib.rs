//! Books, trades, tickers, candles; Redis fan-out and the MoldUDP64/ITCH multicast feed. Filled by the marketdata issue.
