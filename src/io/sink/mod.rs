//! Where results go.
