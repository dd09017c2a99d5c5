//! Property tests: random sequences of acquires, releases, timeouts, cancellations, drops, permit additions and
//! closes never hand out more permits than the limit, and every call ends as exactly one outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker_ref;
use otlp_sync::{
    AcquireError, AcquireOptions, CancellationToken, OwnedPermit, RateLimiter, Semaphore,
    TokioClock,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// `try_acquire_many(n)`, keeping the permits if it works.
    Try(u32),
    /// Start a waiting acquire of `n` permits, with an optional timeout (ms) and an optional token.
    Wait {
        n: u32,
        timeout_ms: Option<u64>,
        token: bool,
    },
    /// Drop the held permit at this index (modulo the count).
    Release(usize),
    /// Cancel the token of the waiter at this index.
    Cancel(usize),
    /// Drop the waiter at this index while it waits.
    DropWaiter(usize),
    /// Advance the paused clock.
    Advance(u64),
    AddPermits(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..4).prop_map(Op::Try),
        4 => (0u32..5, proptest::option::of(0u64..50), any::<bool>())
            .prop_map(|(n, timeout_ms, token)| Op::Wait { n, timeout_ms, token }),
        4 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::DropWaiter),
        2 => (0u64..60).prop_map(Op::Advance),
        1 => (0usize..3).prop_map(Op::AddPermits),
        1 => Just(Op::Close),
    ]
}

type Waiter = (
    Pin<Box<dyn Future<Output = Result<OwnedPermit, AcquireError>>>>,
    CancellationToken,
);

fn run(limit: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let s = Semaphore::new("prop", limit).unwrap();
        let mut held: Vec<OwnedPermit> = Vec::new();
        let mut waiters: Vec<Waiter> = Vec::new();
        let mut calls = 0u64;
        let mut cx = Context::from_waker(noop_waker_ref());

        for op in ops {
            match op {
                Op::Try(n) => {
                    calls += 1;
                    if let Ok(p) = s.try_acquire_many_owned(n) {
                        held.push(p);
                    }
                }
                Op::Wait {
                    n,
                    timeout_ms,
                    token,
                } => {
                    calls += 1;
                    let t = CancellationToken::new();
                    let (s2, t2) = (s.clone(), t.clone());
                    let fut = Box::pin(async move {
                        let mut opts = AcquireOptions::new();
                        if let Some(ms) = timeout_ms {
                            opts = opts.timeout(Duration::from_millis(ms));
                        }
                        if token {
                            opts = opts.cancel_on(&t2);
                        }
                        s2.acquire_owned_with(n, opts).await
                    });
                    waiters.push((fut, t));
                }
                Op::Release(i) if !held.is_empty() => {
                    let i = i % held.len();
                    drop(held.swap_remove(i));
                }
                Op::Cancel(i) if !waiters.is_empty() => {
                    let i = i % waiters.len();
                    waiters[i].1.cancel();
                }
                Op::DropWaiter(i) if !waiters.is_empty() => {
                    let i = i % waiters.len();
                    drop(waiters.swap_remove(i));
                }
                Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                Op::AddPermits(n) => s.add_permits(n).unwrap(),
                Op::Close => s.close(),
                _ => {}
            }
            // Poll every waiter: finished ones hand over their permits or their error.
            let mut i = 0;
            while i < waiters.len() {
                match waiters[i].0.as_mut().poll(&mut cx) {
                    Poll::Pending => i += 1,
                    Poll::Ready(result) => {
                        drop(waiters.swap_remove(i));
                        if let Ok(p) = result {
                            held.push(p);
                        }
                    }
                }
            }
            let in_hand: usize = held.iter().map(OwnedPermit::num_permits).sum();
            prop_assert!(
                in_hand <= s.limit(),
                "{in_hand} permits held, limit {}",
                s.limit()
            );
            prop_assert!(in_hand + s.available() <= s.limit());
            let st = s.stats();
            prop_assert_eq!(st.waiting, waiters.len());
            prop_assert_eq!(st.calls() + waiters.len() as u64, calls);
        }

        drop(waiters);
        drop(held);
        let st = s.stats();
        prop_assert_eq!(
            st.calls(),
            calls,
            "acquired + timeout + cancelled + closed + rejected = calls: {:?}",
            st
        );
        prop_assert!(st.waited <= calls);
        prop_assert_eq!(
            (st.in_use, st.waiting, st.available),
            (0, 0, s.limit()),
            "no permit lost: {:?}",
            st
        );
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn semaphore_never_exceeds_its_limit_and_counts_add_up(limit in 1usize..5, ops in prop::collection::vec(op(), 0..60)) {
        run(limit, ops)?;
    }

    #[test]
    fn rate_limiter_counts_add_up(burst in 1u64..4, ops in prop::collection::vec((0u8..4, 0u64..800), 0..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let l = RateLimiter::builder("prop").per_second(2).burst(burst).clock(TokioClock).build().unwrap();
            let mut calls = 0u64;
            for (kind, ms) in ops {
                calls += 1;
                match kind {
                    0 => { let _ = l.check(); }
                    1 => { let _ = l.check_n(ms as u32 % 5); }
                    2 => { let _ = l.until_ready_timeout(Duration::from_millis(ms)).await; }
                    _ => {
                        calls -= 1;
                        tokio::time::advance(Duration::from_millis(ms)).await;
                    }
                }
            }
            let st = l.stats();
            prop_assert_eq!(st.calls(), calls, "{:?}", st);
            prop_assert_eq!(st.waiting, 0);
            Ok(())
        })?;
    }
}
