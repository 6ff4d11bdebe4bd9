//! Several ranks training as one: the process group itself (two ranks as two threads
//! of this test), and `rnnlm train` launched as ranks.

use rnnlm::distributed::{Launch, World};
use std::time::Duration;
use tch::Tensor;

/// A port no one listens on now, on the loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn launch(rank: usize, size: usize, port: u16) -> Launch {
    Launch {
        rank,
        size,
        master_addr: "127.0.0.1".to_string(),
        master_port: port,
    }
}

#[test]
fn two_ranks_sum_broadcast_and_meet() {
    let port = free_port();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let world = World::join(&launch(rank, 2, port), Duration::from_secs(60)).unwrap();
                let mine = Tensor::from_slice(&[1.0f32 + rank as f32, 10.0]);
                let other = Tensor::from_slice(&[rank as f64]);
                world
                    .all_reduce_sum(&[mine.shallow_clone(), other.shallow_clone()])
                    .unwrap();
                let sums = world.sum(&[0.5, rank as f64]).unwrap();
                let shared = Tensor::from_slice(&[7.0f32 * (rank as f32 + 1.0)]);
                world.broadcast(std::slice::from_ref(&shared), 1).unwrap();
                world.barrier().unwrap();
                (
                    Vec::<f32>::try_from(&mine).unwrap(),
                    Vec::<f64>::try_from(&other).unwrap(),
                    sums,
                    Vec::<f32>::try_from(&shared).unwrap(),
                )
            })
        })
        .collect();
    for handle in ranks {
        let (mine, other, sums, shared) = handle.join().unwrap();
        assert_eq!(mine, [3.0, 20.0]);
        assert_eq!(other, [1.0]);
        assert_eq!(sums, [1.0, 1.0]);
        assert_eq!(shared, [14.0]);
    }
}

#[test]
fn a_rank_alone_fails_within_the_timeout_with_one_line() {
    let port = free_port();
    let start = std::time::Instant::now();
    let error = World::join(&launch(1, 2, port), Duration::from_secs(3))
        .err()
        .expect("no rank 0 serves the rendezvous");
    let message = error.to_string();
    assert!(
        message.starts_with("rank 1 of 2: cannot join the process group at 127.0.0.1:"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
