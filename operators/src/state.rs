//! Keyed operator state that a checkpoint takes without stopping the operator.
//!
//! Each key's value sits behind an [`Arc`]. A checkpoint clones the map (a pointer per
//! key, no value copied) into an [`Image`] and encodes it on another thread; a value
//! the operator changes meanwhile is copied once, on its first write ([`Arc::make_mut`]).
//! The pause a checkpoint costs a worker is the map clone, not the encoding.

use std::sync::Arc;

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// A frozen view of an operator's state, encoded off the hot path.
pub trait StateImage: Send + Sync {
    /// Calls `out(key, bytes)` once per key, in any order.
    fn encode(&self, out: &mut dyn FnMut(&str, &[u8]));

    /// Keys in the image.
    fn len(&self) -> usize;

    /// Whether the image holds no key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-key values, copy-on-write against checkpoints.
pub struct KeyedState<T> {
    map: FxHashMap<CompactString, Arc<T>>,
}

impl<T> Default for KeyedState<T> {
    fn default() -> Self {
        KeyedState {
            map: FxHashMap::default(),
        }
    }
}

impl<T: Clone> KeyedState<T> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.map.get(key).map(|v| &**v)
    }

    /// The value of `key`, to change: copied first if a checkpoint still shares it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.map.get_mut(key).map(Arc::make_mut)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Sets the value of `key`.
    pub fn insert(&mut self, key: &str, value: T) {
        self.map.insert(CompactString::from(key), Arc::new(value));
    }

    /// The value of `key`, created with `T::default()` if missing.
    pub fn get_or_default(&mut self, key: &str) -> &mut T
    where
        T: Default,
    {
        if !self.map.contains_key(key) {
            self.map
                .insert(CompactString::from(key), Arc::new(T::default()));
        }
        self.get_mut(key).expect("just inserted")
    }

    /// Removes and returns the value of `key`.
    pub fn remove(&mut self, key: &str) -> Option<T> {
        self.map.remove(key).map(Arc::unwrap_or_clone)
    }

    /// Keys with a value.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every `(key, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&CompactString, &T)> {
        self.map.iter().map(|(k, v)| (k, &**v))
    }
}

impl<T: Clone + Serialize + Send + Sync + 'static> KeyedState<T> {
    /// A checkpoint's view: shares every value, encoded later with postcard.
    pub fn image(&self) -> Box<dyn StateImage> {
        Box::new(Image(self.map.clone()))
    }

    /// Restores one key's value as [`image`](Self::image) encoded it.
    pub fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String>
    where
        T: serde::de::DeserializeOwned,
    {
        let value: T = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        self.insert(key, value);
        Ok(())
    }
}

/// The values of a [`KeyedState`] at a checkpoint.
struct Image<T>(FxHashMap<CompactString, Arc<T>>);

impl<T: Serialize + Send + Sync> StateImage for Image<T> {
    fn encode(&self, out: &mut dyn FnMut(&str, &[u8])) {
        let mut buf = Vec::new();
        for (k, v) in &self.0 {
            buf.clear();
            // Plain structs of strings, numbers and decimals always encode; one that
            // did not would be a key missing from the checkpoint: better none at all.
            let b = postcard::to_extend(&**v, std::mem::take(&mut buf))
                .unwrap_or_else(|e| panic!("state of key {k:?} does not encode: {e}"));
            out(k, &b);
            buf = b;
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// State already encoded (as read back from a checkpoint file): `(key, bytes)` rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncodedState(pub Vec<(CompactString, Vec<u8>)>);

impl StateImage for EncodedState {
    fn encode(&self, out: &mut dyn FnMut(&str, &[u8])) {
        for (k, v) in &self.0 {
            out(k, v);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_keeps_the_values_of_its_instant() {
        let mut s: KeyedState<Vec<u32>> = KeyedState::default();
        s.insert("a", vec![1]);
        s.get_or_default("b").push(2);
        let image = s.image();
        s.get_mut("a").unwrap().push(9); // copied on write: the image keeps [1]
        s.remove("b");
        s.insert("c", vec![3]);
        let mut rows = Vec::new();
        image.encode(&mut |k, v| {
            rows.push((k.to_owned(), postcard::from_bytes::<Vec<u32>>(v).unwrap()))
        });
        rows.sort();
        assert_eq!(rows, vec![("a".into(), vec![1]), ("b".into(), vec![2])]);
        assert_eq!(s.get("a"), Some(&vec![1, 9]));
        assert_eq!(s.len(), 2);
    }
}
