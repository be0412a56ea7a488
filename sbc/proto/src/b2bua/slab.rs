//! A slab of values behind `Copy` handles: O(1) insert, lookup and removal without hashing,
//! and a generation per slot so that a handle kept after its value was removed finds nothing
//! even once the slot is reused (a stale transaction handle in a call can never reach a new,
//! unrelated transaction).

/// A handle into a [`Slab`]: slot index and the slot's generation when it was filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Key {
    index: u32,
    generation: u32,
}

/// A slot holds its value boxed: a transaction is several hundred bytes, and the slot vector
/// keeps the capacity of its largest burst (doubling), so inline values would keep up to twice
/// the peak's transactions' worth of memory resident. Boxed, an idle slot costs 16 bytes.
#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<Box<T>>,
}

/// Values addressed by [`Key`].
#[derive(Debug)]
pub(super) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`, reusing a free slot when there is one.
    pub(super) fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(Box::new(value));
            return Key {
                index,
                generation: slot.generation,
            };
        }
        // More than u32::MAX live values cannot exist: the caps bound transactions far lower.
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            value: Some(Box::new(value)),
        });
        Key {
            index,
            generation: 0,
        }
    }

    /// The value of `key`, unless it was removed.
    pub(super) fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.value.as_deref())
            .flatten()
    }

    /// The value of `key`, mutably.
    pub(super) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_deref_mut()
    }

    /// Takes the value of `key` out; the slot's next value gets a new generation.
    pub(super) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(*value)
    }

    /// Live values.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every live value.
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_deref())
    }

    /// Every live value, mutably.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|s| s.value.as_deref_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing_after_its_slot_is_reused() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(s.get(a), None, "same slot, older generation");
        assert_eq!(s.remove(a), None);
        assert_eq!((s.get(b), s.len()), (Some(&"b"), 1));
    }
}
