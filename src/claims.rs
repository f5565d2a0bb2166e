//! [`Claims`]: a post in flight is claimed by exactly one sender (an actor's run or the
//! outbox's re-send loop), so no post is ever sent by two at once. The claim is in memory: one
//! server serves a state directory (the store's serving lock), so the process is the only
//! sender.

use std::collections::HashSet;
use std::sync::Mutex;

/// Posts being sent right now.
#[derive(Debug, Default)]
pub struct Claims {
    in_flight: Mutex<HashSet<i64>>,
}

/// A post claimed for sending; released when dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    id: i64,
}

impl Claims {
    /// Claims post `id`, or `None` when another sender has it.
    pub fn try_claim(&self, id: i64) -> Option<Claim<'_>> {
        let inserted = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.insert(id)
        };
        // Built only when this call inserted the id: a `Claim` dropped here would release
        // another sender's claim.
        inserted.then(|| Claim { claims: self, id })
    }

    /// Whether post `id` is being sent.
    pub fn is_claimed(&self, id: i64) -> bool {
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.contains(&id)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .claims
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        in_flight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One claim per post; a dropped claim frees the post.
    #[test]
    fn a_post_has_one_claim_at_a_time() {
        let claims = Claims::default();
        let first = claims.try_claim(7).expect("free");
        assert!(claims.try_claim(7).is_none());
        assert!(claims.try_claim(8).is_some());
        assert!(claims.is_claimed(7));
        drop(first);
        assert!(!claims.is_claimed(7));
        assert!(claims.try_claim(7).is_some());
    }
}
