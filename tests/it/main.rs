//! csm's integration tests, one binary: real `csm` processes against real servers on
//! loopback. Every `csm` they start comes from [`common::csm`].

mod common;
mod schema;
mod usage_common;

mod cli;
mod endpoint;
mod endpoint_hostile;
mod endpoint_tls;
mod http_client;
mod idp;
mod input_forms;
mod license_cli;
mod license_marketplace;
mod license_props;
mod load;
mod profiles;
mod readme;
mod server;
mod sso_merchant;
mod sso_suite;
mod test_endpoint_setup;
mod usage_agent;
mod usage_cli;
mod usage_crash;
mod usage_journal;
mod usage_marketplace;
mod usage_pg;
mod vectors;
