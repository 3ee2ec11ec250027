//! Per node: skip, retag or transfer.
