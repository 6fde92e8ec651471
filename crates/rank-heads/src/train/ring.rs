//! The exchange between nodes: a ring all-reduce over TCP.
//!
//! Burn 0.21's collective has a global level, but it cannot be used for training: its
//! `SyncService::sync` clears a copy of the list of synced peers instead of the list, so every
//! global all-reduce after the first waits for ever (docs/lab/multi-node-design.md). Within a
//! node, Burn's local collective is used as before; between nodes, this module.
//!
//! Rendezvous: every node listens on its own address; ranks other than 0 say hello to rank 0
//! (the master), which answers with every node's address once all have come. Each node then
//! connects to the next rank and accepts the previous one. An all-reduce is the bandwidth-
//! optimal ring: a reduce-scatter and an all-gather of `N - 1` steps each, every node sending
//! one `1/N` slice to the next while receiving one from the previous. Every message carries a
//! sequence number, checked on arrival. Reads and writes time out after the setup's timeout,
//! and a closed connection is an error at once, so a node that dies stops the others.

#![cfg_attr(not(feature = "collective"), allow(dead_code))]

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::RankError;

use super::nodes::NodeSetup;

const HELLO: &[u8; 8] = b"RMHELLO1";
const RING: &[u8; 8] = b"RMRING01";
const DATA: &[u8; 8] = b"RMDATA01";

/// This node's two ring connections.
pub(super) struct Ring {
    rank: usize,
    nodes: usize,
    next: TcpStream,
    prev: BufReader<TcpStream>,
    seq: u64,
}

fn err(msg: impl std::fmt::Display) -> RankError {
    RankError::Distributed(msg.to_string())
}

fn io(rank: usize, what: &str, e: std::io::Error) -> RankError {
    let why = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "timed out: a node stopped or cannot be reached".to_string()
        }
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionAborted => {
            format!("the connection closed ({e}): a node stopped")
        }
        _ => e.to_string(),
    };
    err(format!("node {rank}: {what}: {why}"))
}

fn resolve(addr: &str) -> Result<std::net::SocketAddr, RankError> {
    addr.to_socket_addrs()
        .map_err(|e| err(format!("address `{addr}`: {e}")))?
        .next()
        .ok_or_else(|| err(format!("address `{addr}` resolves to nothing")))
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u32).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_str(r: &mut impl Read) -> std::io::Result<String> {
    let n = read_u32(r)? as usize;
    if n > 1 << 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a string of over 64 KiB: not a rankmamba node",
        ));
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn read_tag(r: &mut impl Read, tag: &[u8; 8]) -> std::io::Result<()> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    if &b != tag {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "expected a {} message, got {:?}: not a rankmamba node of this version",
                String::from_utf8_lossy(tag),
                String::from_utf8_lossy(&b)
            ),
        ));
    }
    Ok(())
}

/// Accepts one connection before `deadline`.
fn accept(listener: &TcpListener, deadline: Instant) -> std::io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no connection came",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `addr`, retrying until `deadline` (the peer may not listen yet).
fn connect(addr: &str, deadline: Instant) -> Result<TcpStream, RankError> {
    let sock = resolve(addr)?;
    loop {
        match TcpStream::connect_timeout(&sock, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(err(format!("cannot connect to {addr}: {e}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn configure(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))
}

impl Ring {
    /// Meets the other nodes (within `setup.timeout`) and connects the ring.
    pub(super) fn connect(setup: &NodeSetup) -> Result<Ring, RankError> {
        let (rank, nodes) = (setup.rank as usize, setup.nodes as usize);
        let deadline = Instant::now() + setup.timeout;
        let here = resolve(&setup.address)?;
        let listener = TcpListener::bind(here).map_err(|e| {
            err(format!(
                "node {rank}: cannot listen on {}: {e}",
                setup.address
            ))
        })?;
        let addresses = if rank == 0 {
            Self::gather(setup, &listener, deadline)?
        } else {
            Self::hello(setup, deadline)?
        };
        let next_addr = &addresses[(rank + 1) % nodes];
        let mut next = connect(next_addr, deadline)
            .map_err(|e| err(format!("node {rank}: the next node, {next_addr}: {e}")))?;
        configure(&next, setup.timeout).map_err(|e| io(rank, "ring setup", e))?;
        next.write_all(RING)
            .and_then(|()| next.write_all(&(rank as u32).to_le_bytes()))
            .map_err(|e| io(rank, "ring setup", e))?;
        let prev_rank = (rank + nodes - 1) % nodes;
        let prev = accept(&listener, deadline)
            .map_err(|e| io(rank, &format!("waiting for node {prev_rank}"), e))?;
        configure(&prev, setup.timeout).map_err(|e| io(rank, "ring setup", e))?;
        let mut prev = BufReader::with_capacity(1 << 20, prev);
        read_tag(&mut prev, RING).map_err(|e| io(rank, "ring setup", e))?;
        let who = read_u32(&mut prev).map_err(|e| io(rank, "ring setup", e))? as usize;
        if who != prev_rank {
            return Err(err(format!(
                "node {rank}: node {who} connected where node {prev_rank} was expected \
                 (two nodes with the same --node-rank?)"
            )));
        }
        Ok(Ring {
            rank,
            nodes,
            next,
            prev,
            seq: 0,
        })
    }

    /// Rank 0: waits for every other node's hello, then sends each the address list.
    fn gather(
        setup: &NodeSetup,
        listener: &TcpListener,
        deadline: Instant,
    ) -> Result<Vec<String>, RankError> {
        let nodes = setup.nodes as usize;
        let mut addresses: Vec<Option<String>> = vec![None; nodes];
        addresses[0] = Some(setup.address.clone());
        let mut peers = Vec::new();
        while peers.len() + 1 < nodes {
            let waiting: Vec<String> = (1..nodes)
                .filter(|r| addresses[*r].is_none())
                .map(|r| r.to_string())
                .collect();
            let mut s = accept(listener, deadline).map_err(|e| {
                io(
                    0,
                    &format!("waiting for node(s) {} to start", waiting.join(", ")),
                    e,
                )
            })?;
            configure(&s, setup.timeout).map_err(|e| io(0, "rendezvous", e))?;
            let hello = (|| {
                read_tag(&mut s, HELLO)?;
                let n = read_u32(&mut s)?;
                let r = read_u32(&mut s)?;
                let a = read_str(&mut s)?;
                Ok::<_, std::io::Error>((n, r, a))
            })();
            let (n, r, a) = hello.map_err(|e| io(0, "rendezvous", e))?;
            let refuse = if n as usize != nodes {
                Some(format!(
                    "node {r} was started with --nodes {n}, node 0 with --nodes {nodes}"
                ))
            } else if r == 0 || r as usize >= nodes || addresses[r as usize].is_some() {
                Some(format!("two nodes say they are node {r}"))
            } else {
                None
            };
            if let Some(why) = refuse {
                let _ = s.write_all(b"E").and_then(|()| write_str(&mut s, &why));
                return Err(err(format!("node 0: {why}")));
            }
            addresses[r as usize] = Some(a);
            peers.push(s);
        }
        let addresses: Vec<String> = addresses
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        for s in &mut peers {
            (|| {
                s.write_all(b"K")?;
                for a in &addresses {
                    write_str(s, a)?;
                }
                s.flush()
            })()
            .map_err(|e| io(0, "rendezvous", e))?;
        }
        Ok(addresses)
    }

    /// Ranks other than 0: says hello to the master and receives the address list.
    fn hello(setup: &NodeSetup, deadline: Instant) -> Result<Vec<String>, RankError> {
        let rank = setup.rank as usize;
        let mut s = connect(&setup.master, deadline).map_err(|e| {
            err(format!(
                "node {rank}: the master (node 0), {}: {e}",
                setup.master
            ))
        })?;
        configure(&s, setup.timeout).map_err(|e| io(rank, "rendezvous", e))?;
        let reply = (|| {
            s.write_all(HELLO)?;
            s.write_all(&setup.nodes.to_le_bytes())?;
            s.write_all(&setup.rank.to_le_bytes())?;
            write_str(&mut s, &setup.address)?;
            s.flush()?;
            // the master answers once every node has come: wait as long as the setup allows
            s.set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))?;
            let mut k = [0u8; 1];
            s.read_exact(&mut k)?;
            if k[0] == b'E' {
                return Ok(Err(read_str(&mut s)?));
            }
            let mut v = Vec::with_capacity(setup.nodes as usize);
            for _ in 0..setup.nodes {
                v.push(read_str(&mut s)?);
            }
            Ok(Ok(v))
        })();
        match reply.map_err(|e| io(rank, "waiting for the other nodes", e))? {
            Ok(v) => Ok(v),
            Err(why) => Err(err(format!("node {rank}: refused by node 0: {why}"))),
        }
    }

    /// Sums `values` over the nodes in place (every node passes the same length).
    pub(super) fn all_reduce_sum(&mut self, values: &mut [f32]) -> Result<(), RankError> {
        let n = self.nodes;
        if n == 1 {
            return Ok(());
        }
        let len = values.len();
        let bounds: Vec<usize> = (0..=n).map(|i| i * len / n).collect();
        let chunk = |i: usize| bounds[i % n]..bounds[i % n + 1];
        let mut incoming = Vec::new();
        // reduce-scatter: after step s, chunk (rank - s - 1) holds s + 2 nodes' sum
        for s in 0..n - 1 {
            let send = chunk(self.rank + n - s);
            let recv = chunk(self.rank + 2 * n - s - 1);
            self.exchange(&values[send], recv.len(), &mut incoming)?;
            for (x, y) in values[recv].iter_mut().zip(&incoming) {
                *x += y;
            }
        }
        // all-gather: chunk (rank + 1) is complete here; pass the complete chunks round
        for s in 0..n - 1 {
            let send = chunk(self.rank + 1 + n - s);
            let recv = chunk(self.rank + n - s);
            self.exchange(&values[send], recv.len(), &mut incoming)?;
            values[recv].copy_from_slice(&incoming);
        }
        Ok(())
    }

    /// Sends `out` to the next node while receiving `len` values from the previous one.
    fn exchange(&mut self, out: &[f32], len: usize, into: &mut Vec<f32>) -> Result<(), RankError> {
        let seq = self.seq;
        self.seq += 1;
        let rank = self.rank;
        let next = &mut self.next;
        let prev = &mut self.prev;
        let (sent, got) = std::thread::scope(|scope| {
            let sender = scope.spawn(move || -> std::io::Result<()> {
                let mut buf = Vec::with_capacity(24 + out.len() * 4);
                buf.extend_from_slice(DATA);
                buf.extend_from_slice(&seq.to_le_bytes());
                buf.extend_from_slice(&(out.len() as u64).to_le_bytes());
                for x in out {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                next.write_all(&buf)?;
                next.flush()
            });
            let got = (|| -> std::io::Result<Vec<u8>> {
                read_tag(prev, DATA)?;
                let mut h = [0u8; 16];
                prev.read_exact(&mut h)?;
                let s = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
                let n = u64::from_le_bytes(h[8..].try_into().expect("8 bytes")) as usize;
                if s != seq || n != len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "message {s} of {n} values where message {seq} of {len} was expected: \
                             the nodes are out of step (different models or settings?)"
                        ),
                    ));
                }
                let mut b = vec![0u8; n * 4];
                prev.read_exact(&mut b)?;
                Ok(b)
            })();
            (sender.join(), got)
        });
        let bytes = got.map_err(|e| io(rank, "receiving from the previous node", e))?;
        match sent {
            Ok(r) => r.map_err(|e| io(rank, "sending to the next node", e))?,
            Err(_) => return Err(err(format!("node {rank}: the sending thread panicked"))),
        }
        into.clear();
        into.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn setups(n: u32, timeout: Duration) -> Vec<NodeSetup> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        (0..n)
            .map(|r| NodeSetup {
                nodes: n,
                rank: r,
                master: format!("127.0.0.1:{}", ports[0]),
                address: format!("127.0.0.1:{}", ports[r as usize]),
                timeout,
            })
            .collect()
    }

    /// Node `r`'s values in round `k`: small integers, so that every f32 sum is exact.
    fn values(r: usize, k: usize, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + r * 13 + k * 3) % 101) as f32 - 50.0)
            .collect()
    }

    /// Two, three and four nodes on loopback, lengths below, at and above the node count,
    /// several rounds: every node ends with the sum a plain loop computes.
    #[test]
    fn ring_sums_equal_the_plain_sum() {
        for n in [2u32, 3, 4] {
            let lens = [1usize, 2, 3, 5, 1000, 4099];
            let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
                let handles: Vec<_> = setups(n, Duration::from_secs(20))
                    .into_iter()
                    .map(|setup| {
                        s.spawn(move || {
                            let mut ring = Ring::connect(&setup).unwrap();
                            lens.iter()
                                .enumerate()
                                .map(|(k, &len)| {
                                    let mut v = values(setup.rank as usize, k, len);
                                    ring.all_reduce_sum(&mut v).unwrap();
                                    v
                                })
                                .collect()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (k, &len) in lens.iter().enumerate() {
                let want: Vec<f32> = (0..len)
                    .map(|i| {
                        (0..n as usize)
                            .map(|r| values(r, k, len)[i] as f64)
                            .sum::<f64>() as f32
                    })
                    .collect();
                for (r, got) in results.iter().enumerate() {
                    assert_eq!(got[k], want, "{n} nodes, node {r}, length {len}");
                }
            }
        }
    }

    /// A node that dies mid-run stops the others with an error, well before the timeout;
    /// a node that never comes stops the master at the timeout, naming it.
    #[test]
    fn a_lost_node_is_an_error_not_a_hang() {
        let t0 = Instant::now();
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = setups(3, Duration::from_secs(30))
                .into_iter()
                .map(|setup| {
                    s.spawn(move || {
                        let mut ring = Ring::connect(&setup).unwrap();
                        let mut v = vec![1.0f32; 10_000];
                        ring.all_reduce_sum(&mut v).unwrap();
                        if setup.rank == 1 {
                            return String::new(); // dies: its sockets close
                        }
                        ring.all_reduce_sum(&mut v).unwrap_err().to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
        for e in [&errors[0], &errors[2]] {
            assert!(e.contains("a node stopped"), "{e}");
        }
        let alone = setups(2, Duration::from_millis(300)).remove(0);
        let e = Ring::connect(&alone).err().unwrap().to_string();
        assert!(
            e.contains("waiting for node(s) 1 to start") && e.contains("timed out"),
            "{e}"
        );
    }

    /// Mismatched node counts and duplicate ranks are refused at the rendezvous, on both sides.
    #[test]
    fn inconsistent_nodes_are_refused() {
        let mut s = setups(2, Duration::from_secs(10));
        s[1].nodes = 3;
        let errors: Vec<String> = std::thread::scope(|sc| {
            let h: Vec<_> = s
                .iter()
                .map(|x| sc.spawn(move || Ring::connect(x).err().unwrap().to_string()))
                .collect();
            h.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            errors[0].contains("started with --nodes 3, node 0 with --nodes 2"),
            "{}",
            errors[0]
        );
        assert!(errors[1].contains("refused by node 0"), "{}", errors[1]);
    }
}
