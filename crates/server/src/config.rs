//! The configuration file (one TOML document, `docs/configuration.md`) and its validation.
//!
//! Every key has a default, so an empty file, or no file at all, is a working development
//! server for `localhost`. Errors name the key, the bad value and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use tern_c2s::{C2sConfig, ConflictPolicy};
use tern_stream::Limits;

/// Who may create accounts with XEP-0077 in-band registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Nobody: accounts are made with `tern user add`.
    #[default]
    Closed,
    /// Clients connecting from a loopback address only (the zero-config development default).
    Loopback,
    /// Anyone who can reach the server.
    Open,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Server-wide settings.
    pub server: ServerSection,
    /// Virtual hosts; when empty, one host named `localhost`.
    #[serde(rename = "host")]
    pub hosts: Vec<HostSection>,
    /// Client listener.
    pub c2s: C2sSection,
    /// Storage backend.
    pub storage: StorageSection,
    /// Message archive (XEP-0313).
    pub mam: MamSection,
    /// Contact addresses published in the servers' disco#info (XEP-0157).
    pub contact: ContactSection,
    /// Push notifications (XEP-0357).
    pub push: PushSection,
    /// SOCKS5 bytestreams proxy (XEP-0065).
    pub proxy65: Proxy65Section,
    /// HTTP File Upload (XEP-0363).
    pub upload: UploadSection,
    /// STUN/TURN servers offered to clients (XEP-0215).
    #[serde(rename = "external_service")]
    pub external_services: Vec<tern_extdisco::ExternalService>,
    /// PubSub service, PEP and private storage (XEP-0060, XEP-0163, XEP-0049).
    pub pubsub: tern_pubsub::PubSubConfig,
    /// HTTP listeners: WebSocket, BOSH, host-meta (tern-http).
    pub http: tern_http::HttpConfig,
    /// Federation with other servers.
    pub s2s: tern_s2s::S2sSection,
    /// External components (XEP-0114), one table each.
    pub component: Vec<tern_component::ComponentEntry>,
    /// Where external components connect.
    pub component_listener: tern_component::ListenerSection,
    /// Multi-user chat (XEP-0045), on by default.
    pub muc: tern_muc::MucConfig,
    /// XEP-0398 avatar conversion and XEP-0153 hashes in presence.
    pub avatar: tern_avatar::AvatarConfig,
}

/// `[upload]`: XEP-0363 HTTP File Upload, served by the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSection {
    /// Run the upload service.
    pub enabled: bool,
    /// The service's JID per host; `{host}` is replaced by the host's domain.
    pub domain: String,
    /// URL prefix of Tern's HTTPS listener as clients reach it, per host (`{host}` is the
    /// host's domain, `{https_port}` the first HTTPS listener's port); behind a reverse proxy,
    /// its public URL.
    pub base_url: String,
    /// Directory of the files (relative to `server.data_dir`).
    pub path: PathBuf,
    /// Largest file, bytes.
    pub max_file_size: u64,
    /// Bytes one account may keep stored.
    pub quota_per_user: u64,
    /// Bytes all uploads together may take.
    pub global_quota: u64,
    /// Content types accepted (`image/*` patterns allowed); empty: any.
    pub allowed_content_types: Vec<String>,
    /// Seconds an upload URL stays valid.
    pub slot_ttl_secs: u64,
    /// Days after which files are deleted (0: kept forever).
    pub expire_after_days: u64,
    /// Key signing upload URLs; by default a random one is made at each start.
    pub secret: Option<String>,
}

impl Default for UploadSection {
    fn default() -> Self {
        UploadSection {
            enabled: true,
            domain: "upload.{host}".into(),
            base_url: "https://{host}:{https_port}".into(),
            path: PathBuf::from("upload"),
            max_file_size: 100 * 1024 * 1024,
            quota_per_user: 1024 * 1024 * 1024,
            global_quota: 10 * 1024 * 1024 * 1024,
            allowed_content_types: Vec::new(),
            slot_ttl_secs: 300,
            expire_after_days: 30,
            secret: None,
        }
    }
}

/// `[proxy65]`: the XEP-0065 SOCKS5 bytestreams proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy65Section {
    /// Run the proxy.
    pub enabled: bool,
    /// The service's JID per host; `{host}` is replaced by the host's domain.
    pub domain: String,
    /// SOCKS5 listener address.
    pub listen: String,
    /// Host name or address clients are told to connect to (default: the host's domain).
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to (default: the listener's port).
    pub advertised_port: Option<u16>,
    /// Simultaneous SOCKS5 connections (two per transfer).
    pub max_connections: usize,
    /// Seconds a connection may wait for its partner and activation.
    pub unpaired_timeout_secs: u64,
    /// Relay bandwidth per transfer and direction, in bytes per second (0: unlimited).
    pub max_bytes_per_second: u64,
}

impl Default for Proxy65Section {
    fn default() -> Self {
        Proxy65Section {
            enabled: true,
            domain: "proxy.{host}".into(),
            listen: "[::]:7777".into(),
            advertised_host: None,
            advertised_port: None,
            max_connections: 512,
            unpaired_timeout_secs: 60,
            max_bytes_per_second: 10 * 1024 * 1024,
        }
    }
}

/// `[push]`: XEP-0357 push notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Put message bodies in notifications (they pass through the app vendor's servers).
    pub include_body: bool,
    /// Put the sender's JID in notifications.
    pub include_sender: bool,
    /// Most push registrations per account.
    pub max_per_user: usize,
}

impl Default for PushSection {
    fn default() -> Self {
        let d = tern_push::PushConfig::default();
        PushSection {
            include_body: d.include_body,
            include_sender: d.include_sender,
            max_per_user: d.max_per_user,
        }
    }
}

/// `[contact]`: XEP-0157 addresses (URIs such as `mailto:` or `xmpp:`), per kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactSection {
    /// Where to report abuse.
    pub abuse: Vec<String>,
    /// The administrators.
    pub admin: Vec<String>,
    /// Feedback.
    pub feedback: Vec<String>,
    /// Sales.
    pub sales: Vec<String>,
    /// Security reports.
    pub security: Vec<String>,
    /// Support.
    pub support: Vec<String>,
    /// Status pages.
    pub status: Vec<String>,
}

impl ContactSection {
    /// `(XEP-0157 field, URIs)` pairs.
    pub fn fields(&self) -> Vec<(String, Vec<String>)> {
        [
            ("abuse-addresses", &self.abuse),
            ("admin-addresses", &self.admin),
            ("feedback-addresses", &self.feedback),
            ("sales-addresses", &self.sales),
            ("security-addresses", &self.security),
            ("status-addresses", &self.status),
            ("support-addresses", &self.support),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Where the database and generated certificates live.
    pub data_dir: PathBuf,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive); RUST_LOG wins.
    pub log_level: String,
    /// Default XEP-0077 policy for hosts that do not set one.
    pub registration: Registration,
    /// Most accounts one IP address may register in-band per hour (0: unlimited).
    pub registration_per_ip_per_hour: u32,
    /// Most messages stored for one offline account (XEP-0160).
    pub offline_max_per_user: u64,
    /// Most items on one roster (RFC 6121 §2.3.3: further sets get `<resource-constraint/>`).
    pub roster_max_items: usize,
    /// Most JIDs on one account's XEP-0191 block list.
    pub blocklist_max_items: usize,
    /// Largest XEP-0054 vCard, in bytes.
    pub vcard_max_bytes: usize,
    /// What XEP-0092 software version queries reveal: `full` (name, version, OS), `version`
    /// (name and version) or `none` (the query is refused, the feature not advertised).
    pub version_disclosure: String,
}

/// `[[host]]`: one served domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// The domain, e.g. `example.org`.
    pub domain: String,
    /// PEM certificate chain; when absent a self-signed one is generated into the data dir.
    pub certificate: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key: Option<PathBuf>,
    /// XEP-0077 policy for this host (defaults to `server.registration`).
    pub registration: Option<Registration>,
}

/// `[c2s]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sSection {
    /// STARTTLS listeners.
    pub listen: Vec<String>,
    /// Direct-TLS listeners (XEP-0368).
    pub listen_tls: Vec<String>,
    /// Require TLS before authentication.
    pub require_encryption: bool,
    /// Largest stanza in bytes.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Seconds of silence allowed before authentication.
    pub preauth_timeout_secs: u64,
    /// Seconds of silence allowed from an authenticated client.
    pub idle_timeout_secs: u64,
    /// Seconds between whitespace keepalives.
    pub keepalive_secs: u64,
    /// Outbound queue length per session.
    pub queue_size: usize,
    /// Milliseconds a message or IQ for a session with a full queue waits for room.
    pub queue_wait_ms: u64,
    /// Seconds one write to a client may take before its connection counts as lost.
    pub write_timeout_secs: u64,
    /// Simultaneous client connections.
    pub max_connections: usize,
    /// `kick_old`, `reject` or `rename`.
    pub resource_conflict: String,
    /// Failed SASL attempts allowed per stream.
    pub max_auth_failures: u32,
    /// Average bytes per second one authenticated client may send (reading pauses beyond it).
    pub max_bytes_per_second: u64,
    /// Longest time a XEP-0198 session waits for its client to resume it.
    pub sm_resume_timeout_secs: u64,
    /// Most unacknowledged stanzas kept for one XEP-0198 session.
    pub sm_max_unacked: usize,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `sqlite` (default) or `memory` (nothing survives a restart).
    pub backend: String,
    /// Database file, relative to `server.data_dir`.
    pub path: PathBuf,
    /// `full` (default: durable against power loss) or `normal` (durable against crashes).
    pub synchronous: String,
}

/// `[mam]`: the message archive (XEP-0313) and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamSection {
    /// Archiving policy of accounts that set no preferences: `always`, `roster` or `never`.
    pub default: String,
    /// Days archived messages are kept (0: forever).
    pub max_age_days: u32,
    /// Most results in one page (and the page size when a client does not ask for one).
    pub max_page: usize,
    /// Most JIDs in one account's always/never preference lists.
    pub max_prefs_jids: usize,
    /// Seconds between two retention sweeps (with `max_age_days` set).
    pub expire_interval_secs: u64,
}

impl Default for MamSection {
    fn default() -> Self {
        let d = tern_mam::MamConfig::default();
        MamSection {
            default: d.default.as_str().into(),
            max_age_days: d.max_age_days,
            max_page: d.max_page,
            max_prefs_jids: d.max_prefs_jids,
            expire_interval_secs: d.expire_interval_secs,
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            data_dir: PathBuf::from("data"),
            log_level: "info".into(),
            registration: Registration::Closed,
            registration_per_ip_per_hour: 10,
            offline_max_per_user: 1000,
            roster_max_items: 1000,
            blocklist_max_items: 1000,
            vcard_max_bytes: 128 * 1024,
            version_disclosure: "version".into(),
        }
    }
}

impl Default for C2sSection {
    fn default() -> Self {
        let d = C2sConfig::default();
        C2sSection {
            listen: vec!["[::]:5222".into()],
            listen_tls: vec!["[::]:5223".into()],
            require_encryption: d.require_encryption,
            max_stanza_bytes: d.limits.max_stanza_bytes,
            max_depth: d.limits.max_depth,
            max_attributes: d.limits.max_attributes,
            preauth_timeout_secs: d.preauth_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            keepalive_secs: d.keepalive_interval.as_secs(),
            queue_size: d.queue_size,
            queue_wait_ms: tern_router::DEFAULT_DELIVERY_WAIT.as_millis() as u64,
            write_timeout_secs: d.write_timeout.as_secs(),
            max_connections: d.max_connections,
            resource_conflict: "kick_old".into(),
            max_auth_failures: d.max_auth_failures,
            max_bytes_per_second: d.max_bytes_per_second,
            sm_resume_timeout_secs: d.sm_resume_timeout.as_secs(),
            sm_max_unacked: d.sm_max_unacked,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: "sqlite".into(),
            path: PathBuf::from("tern.db"),
            synchronous: "full".into(),
        }
    }
}

/// Where the configuration came from, for the start-up log line.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// No file: the embedded development defaults.
    Defaults,
}

impl Config {
    /// The embedded zero-config defaults: `localhost`, self-signed certificate, loopback registration.
    pub fn development() -> Config {
        let mut c = Config::default();
        c.server.registration = Registration::Loopback;
        c
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        let c: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks values that TOML types alone cannot.
    pub fn validate(&self) -> Result<()> {
        for (i, h) in self.hosts.iter().enumerate() {
            if jid::BareJid::new(&h.domain)
                .map(|j| j.node().is_some())
                .unwrap_or(true)
            {
                bail!(
                    "host[{i}].domain = {:?}: expected a domain name such as \"example.org\"",
                    h.domain
                );
            }
            if h.certificate.is_some() != h.key.is_some() {
                bail!(
                    "host[{i}] ({}): set both `certificate` and `key`, or neither",
                    h.domain
                );
            }
        }
        if self.proxy65.listen.parse::<SocketAddr>().is_err() {
            bail!(
                "proxy65.listen = {:?}: expected an address with port, such as \"[::]:7777\"",
                self.proxy65.listen
            );
        }
        if !self.upload.domain.contains("{host}") {
            bail!("upload.domain = {:?}: expected a pattern containing {{host}}, such as \"upload.{{host}}\"", self.upload.domain);
        }
        if !(self.upload.base_url.starts_with("https://")
            || self.upload.base_url.starts_with("http://"))
        {
            bail!(
                "upload.base_url = {:?}: expected an http:// or https:// URL",
                self.upload.base_url
            );
        }
        if self.upload.max_file_size == 0 || self.upload.slot_ttl_secs == 0 {
            bail!("upload.max_file_size and upload.slot_ttl_secs: expected at least 1");
        }
        if !self.proxy65.domain.contains("{host}") {
            bail!("proxy65.domain = {:?}: expected a pattern containing {{host}}, such as \"proxy.{{host}}\"", self.proxy65.domain);
        }
        for (key, list) in [
            ("c2s.listen", &self.c2s.listen),
            ("c2s.listen_tls", &self.c2s.listen_tls),
        ] {
            for a in list {
                if a.parse::<SocketAddr>().is_err() {
                    bail!("{key} = {a:?}: expected an address with port, such as \"0.0.0.0:5222\" or \"[::]:5222\"");
                }
            }
        }
        self.conflict_policy()?;
        self.version_disclosure()?;
        for (field, uris) in self.contact.fields() {
            for u in uris {
                if !u.contains(':') {
                    bail!("contact: {u:?} in {field}: expected a URI such as \"mailto:abuse@example.org\" or \"xmpp:admin@example.org\"");
                }
            }
        }
        for (i, s) in self.external_services.iter().enumerate() {
            s.validate()
                .map_err(|e| anyhow::anyhow!("external_service[{i}].{e}"))?;
        }
        for (key, v, min) in [
            ("c2s.max_stanza_bytes", self.c2s.max_stanza_bytes, 10_000),
            ("c2s.max_depth", self.c2s.max_depth, 4),
            ("c2s.max_attributes", self.c2s.max_attributes, 8),
            ("c2s.queue_size", self.c2s.queue_size, 16),
            (
                "c2s.write_timeout_secs",
                self.c2s.write_timeout_secs as usize,
                1,
            ),
            ("c2s.max_connections", self.c2s.max_connections, 1),
            ("server.roster_max_items", self.server.roster_max_items, 1),
            ("server.vcard_max_bytes", self.server.vcard_max_bytes, 1024),
            ("proxy65.max_connections", self.proxy65.max_connections, 2),
            (
                "proxy65.unpaired_timeout_secs",
                self.proxy65.unpaired_timeout_secs as usize,
                1,
            ),
            ("c2s.sm_max_unacked", self.c2s.sm_max_unacked, 16),
            (
                "c2s.max_bytes_per_second",
                self.c2s.max_bytes_per_second as usize,
                1024,
            ),
        ] {
            if v < min {
                bail!("{key} = {v}: expected at least {min}");
            }
        }
        if self.c2s.keepalive_secs == 0
            || self.c2s.preauth_timeout_secs == 0
            || self.c2s.idle_timeout_secs == 0
        {
            bail!("c2s timeouts (preauth_timeout_secs, idle_timeout_secs, keepalive_secs): expected at least 1 second");
        }
        if self.c2s.max_auth_failures == 0 {
            bail!("c2s.max_auth_failures = 0: expected at least 1");
        }
        match self.storage.backend.as_str() {
            "sqlite" | "memory" => {}
            b => bail!("storage.backend = {b:?}: expected \"sqlite\" or \"memory\""),
        }
        if tern_mam::Policy::parse(&self.mam.default).is_none() {
            bail!(
                "mam.default = {:?}: expected \"always\", \"roster\" or \"never\"",
                self.mam.default
            );
        }
        if self.mam.max_page == 0 {
            bail!("mam.max_page = 0: expected at least 1");
        }
        if self.mam.expire_interval_secs < 60 {
            bail!(
                "mam.expire_interval_secs = {}: expected at least 60",
                self.mam.expire_interval_secs
            );
        }
        self.pubsub.validate().map_err(anyhow::Error::msg)?;
        self.muc.validate()?;
        self.avatar.validate().map_err(anyhow::Error::msg)?;
        match self.storage.synchronous.as_str() {
            "full" | "normal" => {}
            s => bail!("storage.synchronous = {s:?}: expected \"full\" or \"normal\""),
        }
        self.http.validate().map_err(anyhow::Error::msg)?;
        self.s2s.validate()?;
        tern_component::validate(&self.component, &self.component_listener)?;
        Ok(())
    }

    /// Hosts, with the implicit `localhost` when none is configured.
    pub fn host_list(&self) -> Vec<HostSection> {
        if self.hosts.is_empty() {
            vec![HostSection {
                domain: "localhost".into(),
                certificate: None,
                key: None,
                registration: None,
            }]
        } else {
            self.hosts.clone()
        }
    }

    /// Registration policy of a host.
    pub fn registration_for(&self, host: &HostSection) -> Registration {
        host.registration.unwrap_or(self.server.registration)
    }

    fn conflict_policy(&self) -> Result<ConflictPolicy> {
        Ok(match self.c2s.resource_conflict.as_str() {
            "kick_old" => ConflictPolicy::KickOld,
            "reject" => ConflictPolicy::Reject,
            "rename" => ConflictPolicy::Rename,
            v => bail!(
                "c2s.resource_conflict = {v:?}: expected \"kick_old\", \"reject\" or \"rename\""
            ),
        })
    }

    /// What XEP-0092 answers reveal.
    pub fn version_disclosure(&self) -> Result<tern_ping_time_version::Disclosure> {
        use tern_ping_time_version::Disclosure;
        Ok(match self.server.version_disclosure.as_str() {
            "full" => Disclosure::Full,
            "version" => Disclosure::Version,
            "none" => Disclosure::None,
            v => bail!(
                "server.version_disclosure = {v:?}: expected \"full\", \"version\" or \"none\""
            ),
        })
    }

    /// The message archive settings.
    pub fn mam_config(&self) -> tern_mam::MamConfig {
        tern_mam::MamConfig {
            default: tern_mam::Policy::parse(&self.mam.default).unwrap_or(tern_mam::Policy::Always),
            max_age_days: self.mam.max_age_days,
            max_page: self.mam.max_page,
            max_prefs_jids: self.mam.max_prefs_jids,
            expire_interval_secs: self.mam.expire_interval_secs,
        }
    }

    /// The listener settings.
    pub fn c2s_config(&self) -> Result<C2sConfig> {
        let c = &self.c2s;
        Ok(C2sConfig {
            limits: Limits {
                max_stanza_bytes: c.max_stanza_bytes,
                max_depth: c.max_depth,
                max_attributes: c.max_attributes,
                ..Limits::default()
            },
            require_encryption: c.require_encryption,
            preauth_timeout: Duration::from_secs(c.preauth_timeout_secs),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs),
            keepalive_interval: Duration::from_secs(c.keepalive_secs),
            queue_size: c.queue_size,
            write_timeout: Duration::from_secs(c.write_timeout_secs),
            resource_conflict: self.conflict_policy()?,
            max_connections: c.max_connections,
            max_auth_failures: c.max_auth_failures,
            max_bytes_per_second: c.max_bytes_per_second,
            sm_resume_timeout: Duration::from_secs(c.sm_resume_timeout_secs),
            sm_max_unacked: c.sm_max_unacked,
            ..C2sConfig::default()
        })
    }
}

impl From<Registration> for tern_register::Policy {
    fn from(r: Registration) -> Self {
        match r {
            Registration::Closed => tern_register::Policy::Closed,
            Registration::Loopback => tern_register::Policy::Loopback,
            Registration::Open => tern_register::Policy::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_valid() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.host_list()[0].domain, "localhost");
        assert_eq!(c.registration_for(&c.host_list()[0]), Registration::Closed);
    }

    #[test]
    fn errors_name_key_value_and_expectation() {
        let e = Config::parse("[c2s]\nresource_conflict = \"newest\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c2s.resource_conflict") && e.contains("newest") && e.contains("kick_old"),
            "{e}"
        );
        let e = Config::parse("[c2s]\nlisten = [\"5222\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c2s.listen") && e.contains("5222") && e.contains("expected"),
            "{e}"
        );
        let e = Config::parse("[[host]]\ndomain = \"a@b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("host[0].domain"), "{e}");
        let e = Config::parse("[c2s]\nmax_stanza_bytes = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_stanza_bytes"), "{e}");
        let e = Config::parse("[c2s]\nunknown_key = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown_key"), "{e}");
    }

    #[test]
    fn http_section() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.http.listen, vec!["127.0.0.1:5280".to_string()]);
        assert_eq!(c.http.listen_tls, vec!["[::]:5281".to_string()]);
        let e = Config::parse("[http]\nlisten = [\"5280\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.listen") && e.contains("5280"), "{e}");
        let e = Config::parse("[http]\nallowed_origins = [\"chat.example\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.allowed_origins"), "{e}");
        let e = Config::parse("[http]\nbosh_inactivity_secs = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.bosh_inactivity_secs"), "{e}");
        let e = Config::parse("[http]\nplain_is_secure = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain_is_secure"), "{e}");
    }

    #[test]
    fn mam_section() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.mam_config().default, tern_mam::Policy::Always);
        assert_eq!(c.mam_config().max_page, 250);
        let c = Config::parse("[mam]\ndefault = \"roster\"\nmax_age_days = 30\nmax_page = 50\n")
            .unwrap();
        let m = c.mam_config();
        assert_eq!(
            (m.default, m.max_age_days, m.max_page),
            (tern_mam::Policy::Roster, 30, 50)
        );
        let e = Config::parse("[mam]\ndefault = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mam.default") && e.contains("sometimes") && e.contains("roster"),
            "{e}"
        );
        let e = Config::parse("[mam]\nmax_page = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mam.max_page"), "{e}");
    }

    #[test]
    fn muc_section() {
        let c = Config::parse("").unwrap();
        assert!(c.muc.enabled);
        assert_eq!(c.muc.domain_for("localhost"), "conference.localhost");
        let c = Config::parse(
            "[muc]\ndomain = \"rooms.{host}\"\nmax_rooms_per_user = 3\n[muc.default_room]\npersistent = true\n",
        )
        .unwrap();
        assert_eq!(c.muc.domain_for("a.example"), "rooms.a.example");
        assert!(c.muc.default_room.persistent);
        let e = Config::parse("[muc]\nmax_occupants = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("muc.max_occupants"), "{e}");
        let e = Config::parse("[muc.default_room]\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn hosts_and_registration() {
        let c = Config::parse(
            "[server]\nregistration = \"open\"\n[[host]]\ndomain = \"a.example\"\n[[host]]\ndomain = \"b.example\"\nregistration = \"closed\"\n",
        )
        .unwrap();
        let hosts = c.host_list();
        assert_eq!(c.registration_for(&hosts[0]), Registration::Open);
        assert_eq!(c.registration_for(&hosts[1]), Registration::Closed);
    }
}
