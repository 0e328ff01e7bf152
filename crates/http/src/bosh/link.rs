//! The c2s side of a BOSH session: XEP-0206 streams as a [`Link`]. Input arrives as batches
//! from the HTTP handlers, in `rid` order; output is handed to the session, which answers
//! held requests with it.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use tokio::sync::mpsc;

use tern_c2s::{Framing, Header, Link, LinkError, Outbox};
use tern_stream::{ParseError, StreamEvent};

use super::session::{Batch, BoshSession};

/// A client stream carried by a BOSH session.
pub(crate) struct BoshLink {
    session: Arc<BoshSession>,
    rx: mpsc::Receiver<Batch>,
    events: VecDeque<StreamEvent>,
    secure: bool,
    ended: bool,
}

impl BoshLink {
    pub(crate) fn new(session: Arc<BoshSession>, rx: mpsc::Receiver<Batch>, secure: bool) -> Self {
        BoshLink {
            session,
            rx,
            events: VecDeque::new(),
            secure,
            ended: false,
        }
    }
}

#[async_trait::async_trait]
impl Link for BoshLink {
    fn framing(&self) -> Framing {
        Framing::Standalone
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    async fn receive(&mut self) -> Result<usize, LinkError> {
        // mpsc::Receiver::recv is cancel-safe.
        match self.rx.recv().await {
            Some((events, bytes)) => {
                self.events.extend(events);
                Ok(bytes)
            }
            None => Err(LinkError::Closed),
        }
    }

    fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        Ok(self.events.pop_front())
    }

    /// The client restarts with `xmpp:restart='true'` (XEP-0206 §5), which arrives as a header.
    fn restart(&mut self) {}

    async fn write(&mut self, out: &Outbox) -> io::Result<()> {
        self.session.push(out)
    }

    async fn send_header(&mut self, h: &Header<'_>) -> io::Result<()> {
        self.session.header(h.id, h.from);
        Ok(())
    }

    async fn close(&mut self, out: &Outbox) -> io::Result<()> {
        self.ended = true;
        self.session.end(out);
        Ok(())
    }
}

impl Drop for BoshLink {
    fn drop(&mut self) {
        if !self.ended {
            self.session.abandon();
        }
    }
}
