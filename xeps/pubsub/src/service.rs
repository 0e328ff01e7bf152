//! The XEP-0060 service on its own domain (`pubsub.<host>` by default): every stanza to the
//! domain comes here (DESIGN.md §1, routing step 4). IQs in the pubsub namespaces and
//! disco#info/items are answered; everything else gets the errors RFC 6120 asks for.

use std::sync::Arc;

use async_trait::async_trait;
use tern_router::Spec;
use tracing::debug;

use tern_router::{Condition, Kind, Origin, Router, Service, Stanza, StanzaError};

use crate::config::PubSubConfig;
use crate::disco;
use crate::engine::Entity;
use crate::error::reply_error;
use crate::iq;
use crate::ns::{NS_DISCO_INFO, NS_DISCO_ITEMS, NS_OWNER, NS_PUBSUB};

/// The pubsub service of one domain.
pub struct PubSubService {
    domain: String,
    cfg: Arc<PubSubConfig>,
}

impl PubSubService {
    /// A service answering for `domain`.
    pub fn new(domain: &str, cfg: Arc<PubSubConfig>) -> Self {
        PubSubService {
            domain: domain.to_ascii_lowercase(),
            cfg,
        }
    }

    async fn disco(&self, entity: &Entity<'_>, router: &Arc<Router>, st: &Stanza, ns: &str) {
        if st.type_() != "get" {
            return router.bounce(st, Condition::BadRequest.into()).await;
        }
        let node = st.iq_payload().and_then(|q| q.attr("node"));
        let result = match (node, ns) {
            (Some(n), _) => disco::node_query(entity, ns, n, &st.from).await,
            (None, NS_DISCO_INFO) => Ok(Some(disco::service_info())),
            (None, _) => disco::node_list(entity, &st.from).await.map(|items| {
                let mut q = minidom::Element::builder("query", NS_DISCO_ITEMS).build();
                for i in items {
                    q.append_child(i);
                }
                Some(q)
            }),
        };
        match result {
            Ok(Some(q)) => router.reply_result(st, Some(q)).await,
            Ok(None) => router.bounce(st, Condition::ItemNotFound.into()).await,
            Err(e) => reply_error(router, st, &e).await,
        }
    }
}

#[async_trait]
impl Service for PubSubService {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(60, "1.30.0")]
    }

    fn item_name(&self) -> Option<String> {
        Some("Publish-Subscribe service".into())
    }

    async fn handle(&self, router: &Arc<Router>, _origin: &Origin, st: Stanza) {
        let to_domain = st
            .to
            .as_ref()
            .is_some_and(|t| t.node().is_none() && t.resource().is_none());
        match st.kind {
            Kind::Iq if st.is_iq_request() => {
                if !to_domain {
                    return router
                        .bounce(&st, Condition::ServiceUnavailable.into())
                        .await;
                }
                let ns = st.iq_payload().map(|p| p.ns()).unwrap_or_default();
                let entity = Entity::service(router, &self.domain, &self.cfg);
                match ns.as_str() {
                    NS_PUBSUB | NS_OWNER => match iq::handle(&entity, &st).await {
                        Ok(out) => router.reply_result(&st, out.reply).await,
                        Err(e) => {
                            debug!(service = %self.domain, "pubsub request failed: {e}");
                            reply_error(router, &st, &e).await
                        }
                    },
                    NS_DISCO_INFO | NS_DISCO_ITEMS => self.disco(&entity, router, &st, &ns).await,
                    _ => {
                        router
                            .bounce(&st, StanzaError::new(Condition::ServiceUnavailable))
                            .await
                    }
                }
            }
            // Responses: the service sends no requests of its own.
            Kind::Iq => {}
            Kind::Message if matches!(st.type_(), "chat" | "normal") => {
                router
                    .bounce(&st, Condition::ServiceUnavailable.into())
                    .await
            }
            Kind::Message | Kind::Presence => {}
        }
    }
}
