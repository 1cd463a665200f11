//! Small rules shared by the configuration, the protocol and the pages: random secrets and their
//! comparison, what a redirect URI may be, and how much of anything a stranger can make the server
//! keep. They depend on nothing above the store.

pub(crate) mod limits;
pub(crate) mod redirect_uri;
pub(crate) mod secret;
