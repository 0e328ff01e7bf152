//! Tern router: the stanza model, the module and hook interface, the session registry and
//! routing.
//!
//! Layout: [`stanza`] holds thin views over elements and stanza errors (RFC 6120 §8);
//! [`module`] the [`Module`] trait and the hook bus every feature plugs into; [`registry`] the
//! session registry behind a trait a cluster can replace; [`router`] classification of the
//! addressee and the default delivery rules of RFC 6120 §10 and RFC 6121 §8.5; [`xml`] small
//! element helpers; [`disco`] XEP-0030 for hosts and accounts over the modules' features;
//! [`service`] the domain → service table (MUC, PubSub, components) routing consults;
//! [`local`] server-internal IQ requests answered in-process (`Router::request`); [`caps`]
//! XEP-0115 verification strings; [`cache`] a read cache for per-account module state kept in
//! storage.

pub mod cache;
pub mod caps;
pub mod disco;
pub mod local;
pub mod module;
pub mod registry;
pub mod router;
pub mod service;
pub mod stanza;
pub mod time;
pub mod xml;

pub use cache::AccountCache;
pub use jid::{BareJid, FullJid, Jid};
pub use local::RequestError;
pub use module::{Ctx, Event, Flow, Hooks, Module, Origin, PreAuth, SessionEvent, Spec, Target};
pub use registry::{
    LocalRegistry, Outbound, PresenceState, SessionHandle, SessionRegistry, SharedStanza,
    FLAG_DETACHED,
};
pub use router::{RemoteRoute, Router, RouterBuilder, DEFAULT_DELIVERY_WAIT};
pub use service::{Service, Services};
pub use stanza::{Condition, ErrorType, Kind, Stanza, StanzaError, NS_STANZAS};
