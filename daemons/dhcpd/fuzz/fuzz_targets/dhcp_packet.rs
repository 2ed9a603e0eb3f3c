//! Any datagram on a domain's socket: the packet path (dhcproto's decoder,
//! the lease engine, the reply's encoding) never panics, an answer is
//! always a BOOTREPLY that decodes again, and an offered or acknowledged
//! address lies in the domain's pool.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::{Mutex, OnceLock};

use dhcproto::{Decodable, Decoder};
use hearth_common::types::DomainId;
use hearth_dhcpd::engine::{Domain, Engine};
use hearth_dhcpd::DhcpConfig;
use libfuzzer_sys::fuzz_target;

struct World {
    engine: Engine,
    domain: Domain,
    _dir: std::path::PathBuf,
}

fn world() -> &'static Mutex<World> {
    static WORLD: OnceLock<Mutex<World>> = OnceLock::new();
    WORLD.get_or_init(|| {
        // State on tmpfs: every change is written (and fsynced) as in the daemon.
        let dir = std::env::temp_dir().join(format!("hearth-dhcpd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("state dir");
        let cfg: DhcpConfig =
            hearth_common::config::parse(std::path::Path::new("fuzz.toml"), "").expect("config");
        let engine = Engine::open(&cfg, &dir).expect("engine");
        let domain = Domain::new(
            DomainId::parse("lan").expect("id"),
            "hb-lan".into(),
            Ipv4Addr::new(10, 9, 0, 0),
            28,
            Ipv4Addr::new(10, 9, 0, 1),
            None,
        )
        .expect("domain");
        Mutex::new(World {
            engine,
            domain,
            _dir: dir,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut w = world().lock().unwrap_or_else(|p| p.into_inner());
    let World { engine, domain, .. } = &mut *w;
    if let Some(reply) = hearth_dhcpd::server::packet_path(engine, domain, data, 1_000) {
        let m = dhcproto::v4::Message::decode(&mut Decoder::new(&reply)).expect("reply decodes");
        assert_eq!(m.opcode(), dhcproto::v4::Opcode::BootReply);
        let y = m.yiaddr();
        assert!(
            y.is_unspecified() || domain.in_pool(y),
            "{y} outside the pool"
        );
    }
});
