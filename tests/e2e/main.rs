//! End-to-end tests: they run the real `cdp` binary and talk to it over HTTP, as a user would.
//! One test binary, modules by theme.

// Tests fail by panicking; helpers unwrap like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod audiences;
mod bench;
mod browser;
mod browser_sdk;
mod campaign_demo;
mod campaign_schedule;
mod campaign_split;
mod campaigns;
mod cluster;
mod console;
mod damaged_data;
mod deploy;
mod destinations;
mod disk_full;
mod durability;
mod exports;
mod fuzzy;
mod import;
mod ingest;
mod keys;
mod manage;
mod matching;
mod policy;
mod postgres;
mod requests;
mod sdk;
mod serve;
mod sftp;
mod store;
mod tidy;
mod webdriver;
