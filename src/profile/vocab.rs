//! The normalized vocabulary (SPEC §4).
