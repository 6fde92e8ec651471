//! Training across processes (nodes): the setup of one node and the consistency check of the
//! first step. The exchange itself is in `ring.rs`.
#![cfg_attr(not(feature = "collective"), allow(dead_code))]

use std::time::Duration;

use burn::module::{ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::RankError;

/// One node (process) of a multi-node data-parallel run; see
/// [`Trainer::with_nodes`](super::Trainer::with_nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSetup {
    /// How many nodes take part.
    pub nodes: u32,
    /// This node's rank, `0..nodes`. Rank 0 is the master (the others meet there) and writes
    /// the log and the checkpoints.
    pub rank: u32,
    /// Rank 0's `host:port` (its [`address`](Self::address)).
    pub master: String,
    /// `host:port` under which the other nodes reach this node; it listens there.
    pub address: String,
    /// How long to wait for the other nodes at any one point (the start, each exchange)
    /// before stopping with an error.
    pub timeout: Duration,
}

impl NodeSetup {
    /// Checks the ranks and addresses.
    pub fn check(&self) -> Result<(), RankError> {
        if self.nodes == 0 {
            return Err(RankError::Config(
                "the number of nodes must be positive".into(),
            ));
        }
        if self.rank >= self.nodes {
            return Err(RankError::Config(format!(
                "node rank {} is outside 0..{} (ranks count from 0)",
                self.rank, self.nodes
            )));
        }
        if self.timeout.is_zero() {
            return Err(RankError::Config(
                "the node timeout must be positive".into(),
            ));
        }
        port_of("master", &self.master)?;
        port_of("node address", &self.address)?;
        if self.rank == 0 && self.master != self.address {
            return Err(RankError::Config(format!(
                "node 0 is the master: its address ({}) must be the master's ({})",
                self.address, self.master
            )));
        }
        Ok(())
    }
}

/// `host:port`: the port, checked.
fn port_of(what: &str, addr: &str) -> Result<u16, RankError> {
    let bad = |why: &str| {
        RankError::Config(format!(
            "{what} `{addr}`: {why} (expected HOST:PORT, e.g. 10.0.0.2:3001)"
        ))
    };
    if addr.contains("://") {
        return Err(bad("a plain HOST:PORT, no scheme"));
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad("the port is not a number in 1..65535")),
    }
}

/// 64-bit FNV-1a: a stable hash (the same on every machine and build), for fingerprints.
#[derive(Clone, Copy)]
pub(super) struct Fnv(pub(super) u64);

impl Fnv {
    pub(super) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(super) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for x in b {
            self.0 ^= *x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub(super) fn of(b: &[u8]) -> u64 {
        Fnv::new().bytes(b).0
    }
}

/// What every node must agree on before the first step: named 64-bit hashes.
///
/// Each hash travels as 16 nibbles `c` and their squares `c²` (small integers, exact in
/// `f32`); after a sum all-reduce over `G` replicas, `G·Σc² = (Σc)²` holds for every nibble
/// exactly when all replicas sent the same hash (equality in Cauchy-Schwarz), and is exact in
/// `f32` for up to 74,000 replicas.
pub(super) struct Fingerprint {
    pub(super) fields: Vec<(&'static str, u64)>,
}

impl Fingerprint {
    pub(super) fn encode(&self) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.fields.len() * 32);
        for (_, h) in &self.fields {
            for j in 0..16 {
                let c = ((h >> (4 * j)) & 0xf) as f32;
                v.push(c);
                v.push(c * c);
            }
        }
        v
    }

    /// The fields whose hashes differ between replicas, from the sum over `replicas`.
    pub(super) fn differing(&self, summed: &[f32], replicas: usize) -> Vec<&'static str> {
        let g = replicas as f64;
        self.fields
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                (0..16).any(|j| {
                    let s1 = summed[i * 32 + 2 * j] as f64;
                    let s2 = summed[i * 32 + 2 * j + 1] as f64;
                    g * s2 != s1 * s1
                })
            })
            .map(|(_, (name, _))| *name)
            .collect()
    }
}

/// Hashes every float parameter (shape and values, in module order).
pub(super) struct WeightsHash(pub(super) Fnv);

impl<B: Backend> ModuleVisitor<B> for WeightsHash {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val();
        for d in v.dims() {
            self.0.bytes(&(d as u64).to_le_bytes());
        }
        let data = v.into_data().convert::<f32>();
        self.0.bytes(data.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(nodes: u32, rank: u32, master: &str, addr: &str) -> NodeSetup {
        NodeSetup {
            nodes,
            rank,
            master: master.into(),
            address: addr.into(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn setups_are_checked() {
        assert!(
            setup(2, 1, "127.0.0.1:9000", "10.0.0.2:9001")
                .check()
                .is_ok()
        );
        assert!(setup(2, 0, "a:1", "a:1").check().is_ok());
        for (s, why) in [
            (setup(2, 2, "a:1", "b:2"), "outside 0..2"),
            (setup(0, 0, "a:1", "b:2"), "positive"),
            (setup(2, 1, "a", "b:2"), "no port"),
            (setup(2, 1, "a:1", "b:0"), "1..65535"),
            (setup(2, 1, "a:1", "b:x"), "1..65535"),
            (setup(2, 1, "ws://a:1", "b:2"), "no scheme"),
            (setup(2, 1, "a:1", ":2"), "no host"),
            (setup(2, 0, "a:1", "b:2"), "node 0 is the master"),
        ] {
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    /// FNV-1a 64's published test vectors.
    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(Fnv::of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv::of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv::of(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// The sums of the replicas' encodings reveal exactly the fields that differ, including
    /// where one node's value is the mean of the others' (1, 2, 3).
    #[test]
    fn fingerprints_name_the_fields_that_differ() {
        let fp = |a: u64, b: u64| Fingerprint {
            fields: vec![("config", a), ("data", b)],
        };
        let sum = |fps: &[Fingerprint]| {
            let mut s = vec![0f32; 64];
            for f in fps {
                for (x, y) in s.iter_mut().zip(f.encode()) {
                    *x += y;
                }
            }
            s
        };
        let same = [fp(7, u64::MAX), fp(7, u64::MAX), fp(7, u64::MAX)];
        assert!(same[0].differing(&sum(&same), 3).is_empty());
        let mid = [fp(1, 5), fp(2, 5), fp(3, 5)];
        assert_eq!(mid[1].differing(&sum(&mid), 3), ["config"]);
        let both = [fp(1, 5), fp(1, 6)];
        assert_eq!(both[0].differing(&sum(&both), 2), ["config", "data"][1..]);
        let high = [fp(1 << 63, 0), fp(0, 0)];
        assert_eq!(high[0].differing(&sum(&high), 2), ["config"]);
    }
}
