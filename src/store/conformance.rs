//! Reusable checks for custom store implementations (being written).
