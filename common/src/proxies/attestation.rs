//! Proxy for this daemon's interface (filled in with the daemon).
