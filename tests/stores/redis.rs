//! Redis (being written).
