//! XEP-0060 Publish-Subscribe for Tern: the PubSub service on `pubsub.<host>`, XEP-0163 PEP on
//! every account with XEP-0223 publish-options (which carries XEP-0384 OMEMO device lists and
//! bundles, XEP-0084 avatars and XEP-0402 bookmarks), XEP-0049 private XML storage, and the
//! XEP-0048 ⇄ XEP-0402 bookmark synchronization.
//!
//! Layout: [`node`] is a node's configuration, affiliations and subscriptions; [`store`] keeps
//! nodes and items on the `Map` store; [`forms`] reads and writes XEP-0004 forms; [`engine`]
//! is the pubsub entity (PEP account or service domain) with access checks and notifications;
//! [`ops`] and [`owner`] are the XEP-0060 operations; [`iq`] parses requests into them;
//! [`caps`] tracks XEP-0115 capabilities for filtered notifications; [`pep`] and [`service`]
//! plug the engine into the router as a module and a service; [`disco`] answers node
//! discovery; [`bookmarks`] and [`private`] do XEP-0402/0048/0049.

pub mod bookmarks;
pub mod caps;
pub mod config;
pub mod disco;
pub mod engine;
pub mod error;
pub mod forms;
pub mod iq;
pub mod node;
pub mod ns;
pub mod ops;
pub mod owner;
pub mod pep;
pub mod private;
pub mod service;
pub mod store;

use std::sync::Arc;

pub use config::{CreatePolicy, PubSubConfig};
pub use pep::PepModule;
pub use private::PrivateModule;
pub use service::PubSubService;

/// The PEP and private storage modules, sharing one capabilities view.
pub fn modules(cfg: &PubSubConfig) -> (Arc<PepModule>, Arc<PrivateModule>) {
    let cfg = Arc::new(cfg.clone());
    let pep = PepModule::new(cfg.clone());
    let private = PrivateModule::with_caps(cfg, pep.caps());
    (Arc::new(pep), Arc::new(private))
}
