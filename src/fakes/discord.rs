//! Fake Discord REST API (see module docs once written).
