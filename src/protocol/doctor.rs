//! The signature doctor: given a mismatch, try the usual mistakes and name the one that matches.
