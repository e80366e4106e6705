//! Which partition an object is in, and which live instance should own each partition.
//!
//! Both are pure functions of names every instance sees alike (blob names, the sorted list
//! of live instances), so every instance computes the same assignment without talking to
//! the others: each acquires the leases of its own partitions and releases the others'.

use crate::path::hour_dir;
use crate::store::Fnv;
use std::hash::Hasher;

/// The partition of an object: its NSG's or flow log's directory hashed, so that every
/// hour and NIC of one NSG is in one partition (read in order, listed by one instance).
pub fn partition_of(name: &str, partitions: u32) -> u32 {
    partition_of_dir(hour_dir(name).unwrap_or(name), partitions)
}

/// The partition of an NSG's or flow log's directory (`hour_dir`).
pub fn partition_of_dir(dir: &str, partitions: u32) -> u32 {
    let mut h = Fnv::default();
    h.write(dir.as_bytes());
    (h.finish() % u64::from(partitions.max(1))) as u32
}

/// For each partition, the index in `instances` (sorted, no repeats) of its owner.
///
/// Each partition goes to the instance that ranks it highest (rendezvous hashing), unless
/// that instance has its share already: shares are `partitions / n`, one more for the first
/// `partitions % n` instances to fill up. So the spread is as even as it can be, and one
/// instance joining or leaving moves few partitions besides those it takes or frees.
pub fn assign(instances: &[String], partitions: u32) -> Vec<usize> {
    let n = instances.len();
    if n == 0 {
        return Vec::new();
    }
    let (low, extra) = (partitions as usize / n, partitions as usize % n);
    let mut counts = vec![0usize; n];
    let mut extras_used = 0;
    (0..partitions)
        .map(|p| {
            let mut ranked: Vec<(u64, usize)> =
                (0..n).map(|i| (weight(&instances[i], p), i)).collect();
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            let owner = ranked
                .iter()
                .map(|(_, i)| *i)
                .find(|&i| counts[i] < low || (counts[i] == low && extras_used < extra))
                .expect("shares add up to the partitions");
            if counts[owner] == low {
                extras_used += 1;
            }
            counts[owner] += 1;
            owner
        })
        .collect()
}

fn weight(instance: &str, partition: u32) -> u64 {
    let mut h = Fnv::default();
    h.write(instance.as_bytes());
    h.write(&partition.to_le_bytes());
    // FNV's low bits mix poorly for short inputs: finish with a multiply-xorshift.
    let x = h.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("flowgate-7d9f8-{i:05}")).collect()
    }

    fn counts(owners: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for o in owners {
            c[*o] += 1;
        }
        c
    }

    #[test]
    fn shares_are_as_even_as_they_can_be() {
        for n in 1..=9 {
            for p in [1u32, 7, 12, 32, 64] {
                let c = counts(&assign(&names(n), p), n);
                let (min, max) = (c.iter().min().unwrap(), c.iter().max().unwrap());
                assert!(max - min <= 1, "{n} instances, {p} partitions: {c:?}");
                assert_eq!(c.iter().sum::<usize>(), p as usize);
            }
        }
    }

    #[test]
    fn a_joining_instance_moves_little_besides_its_share() {
        let three = names(3);
        let mut four = three.clone();
        four.push("flowgate-7d9f8-new".into());
        four.sort();
        let before = assign(&three, 32);
        let after = assign(&four, 32);
        let moved = (0..32)
            .filter(|&p| three[before[p]] != four[after[p]])
            .count();
        // The newcomer's 8 partitions must move; allow a few more for the rebalance.
        assert!((8..=14).contains(&moved), "{moved} partitions moved");
    }

    #[test]
    fn every_hour_and_nic_of_an_nsg_is_in_one_partition() {
        let a = "resourceId=/S/NSG1/y=2024/m=03/d=04/h=10/m=00/macAddress=AA/PT1H.json";
        let b = "resourceId=/S/NSG1/y=2024/m=03/d=05/h=23/m=00/macAddress=BB/PT1H.json";
        assert_eq!(partition_of(a, 32), partition_of(b, 32));
        assert_eq!(
            partition_of(a, 32),
            partition_of_dir("resourceId=/S/NSG1/", 32)
        );
        let spread: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_of_dir(&format!("resourceId=/S/NSG{i}/"), 32))
            .collect();
        assert_eq!(spread.len(), 32, "200 NSGs reach every partition");
    }
}
