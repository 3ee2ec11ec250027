//! Human lines and JSON reports.
