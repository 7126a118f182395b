//! A small language model, built at start-up from the corpus shipped in `data/`.
//!
//! Word-level, with one attention layer over the session's context: a bigram table
//! (log-probabilities counted from the corpus) gives each next word a base score, and
//! attention over the key/value cache of the words so far adds a context term, so what
//! a session said before changes what it says next. Embeddings are random projections
//! of each word's successor counts (words used alike get alike vectors); the projection
//! and the attention matrices are drawn from a seed that is the model version, so a
//! "model update" (a new version) changes the generated text, deterministically.
//!
//! The per-session state is the [`KvCache`]: a key and a value vector per context word.
//! Its storage is allocated by the session store (`sessions.rs`), which is where the
//! memory of a busy service goes.

use std::collections::HashMap;

/// Width of embeddings, keys and values.
pub const DIM: usize = 32;

/// The words the model knows. Token 0 is `<unk>`.
#[derive(Debug)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    fn build(corpus: &str) -> Vocab {
        let mut vocab = Vocab {
            words: vec!["<unk>".to_string()],
            index: HashMap::new(),
        };
        for word in split_words(corpus) {
            if !vocab.index.contains_key(&word) {
                vocab.index.insert(word.clone(), vocab.words.len() as u32);
                vocab.words.push(word);
            }
        }
        vocab
    }

    /// Number of tokens, `<unk>` included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether only `<unk>` is known.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= 1
    }

    /// The tokens of `text` (unknown words become `<unk>`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        split_words(text)
            .map(|w| self.index.get(&w).copied().unwrap_or(0))
            .collect()
    }

    /// The text of `tokens`, punctuation attached to the word before it.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut out = String::new();
        for &t in tokens {
            let word = self.words.get(t as usize).map_or("<unk>", String::as_str);
            if !out.is_empty() && !matches!(word, "." | "," | "?" | "!") {
                out.push(' ');
            }
            out.push_str(word);
        }
        out
    }
}

/// Lowercase words, with `.`, `,`, `?` and `!` as words of their own.
fn split_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace().flat_map(|raw| {
        let lower = raw.to_lowercase();
        let word: String = lower
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .collect();
        let punct: Vec<String> = lower
            .chars()
            .filter(|c| matches!(c, '.' | ',' | '?' | '!'))
            .take(1)
            .map(String::from)
            .collect();
        (!word.is_empty()).then_some(word).into_iter().chain(punct)
    })
}

/// A deterministic random number generator (xorshift64*), seeded per model version and
/// per session.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly normal (sum of uniforms), mean 0, variance 1.
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.next_f32()).sum::<f32>() * 1.732 - 3.464
    }
}

type Vector = [f32; DIM];
type Matrix = [Vector; DIM];

/// One version of the model.
#[derive(Debug)]
pub struct Model {
    /// The version (the seed of its random parts).
    pub version: u32,
    vocab: Vocab,
    embed: Vec<Vector>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    /// `bigram[prev][next]`: log-probability of `next` after `prev` (add-k smoothed).
    bigram: Vec<Vec<f32>>,
}

/// The corpus shipped with the example.
pub const CORPUS: &str = include_str!("../data/corpus.txt");

impl Model {
    /// Builds version `version` from `corpus`.
    pub fn build(corpus: &str, version: u32) -> Model {
        let vocab = Vocab::build(corpus);
        let n = vocab.len();
        let tokens = vocab.encode(corpus);
        let mut counts = vec![vec![0u32; n]; n];
        for pair in tokens.windows(2) {
            counts[pair[0] as usize][pair[1] as usize] += 1;
        }
        // Add-k smoothing with a small k: words never seen after `prev` stay possible
        // (the context term can still pick them) but rare.
        const K: f32 = 0.01;
        let bigram = counts
            .iter()
            .map(|row| {
                let total: u32 = row.iter().sum();
                let denominator = (total as f32 + K * n as f32).ln();
                row.iter()
                    .map(|&c| (c as f32 + K).ln() - denominator)
                    .collect()
            })
            .collect();
        let mut rng = Rng::new(0x5EED_0000 + u64::from(version));
        let projection: Vec<Vector> = (0..n).map(|_| random_vector(&mut rng)).collect();
        let embed = counts
            .iter()
            .map(|row| {
                let mut v = [0.0; DIM];
                for (next, &c) in row.iter().enumerate() {
                    if c > 0 {
                        for (x, p) in v.iter_mut().zip(&projection[next]) {
                            *x += c as f32 * p;
                        }
                    }
                }
                normalize(v)
            })
            .collect();
        let mut matrix = || -> Matrix {
            let mut m = [[0.0; DIM]; DIM];
            for row in &mut m {
                *row = random_vector(&mut rng).map(|x| x / (DIM as f32).sqrt());
            }
            m
        };
        let (wq, wk, wv) = (matrix(), matrix(), matrix());
        Model {
            version,
            vocab,
            embed,
            wq,
            wk,
            wv,
            bigram,
        }
    }

    /// The model's vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Feeds `prompt` into the session's cache, then generates up to `max_tokens` words,
    /// each conditioned on the cache (which grows with every word, sliding when full).
    /// Deterministic for a given model version, cache, prompt and `rng`.
    pub fn generate(
        &self,
        cache: &mut KvCache,
        prompt: &str,
        max_tokens: usize,
        rng: &mut Rng,
    ) -> Vec<u32> {
        let mut last = 0;
        for token in self.vocab.encode(prompt) {
            self.push(cache, token);
            last = token;
        }
        let mut out = Vec::with_capacity(max_tokens);
        let mut logits = vec![0.0f32; self.vocab.len()];
        for _ in 0..max_tokens {
            let context = self.attend(cache, last);
            let row = &self.bigram[last as usize];
            for (t, logit) in logits.iter_mut().enumerate() {
                *logit = row[t] + 0.75 * dot(&context, &self.embed[t]);
            }
            logits[0] = f32::NEG_INFINITY; // never say <unk>
            let next = sample(&logits, 0.5, rng);
            self.push(cache, next);
            out.push(next);
            last = next;
        }
        out
    }

    /// Appends `token`'s key and value to the cache.
    fn push(&self, cache: &mut KvCache, token: u32) {
        let e = &self.embed[token as usize % self.embed.len()];
        cache.push(&apply(&self.wk, e), &apply(&self.wv, e));
    }

    /// The attention-weighted value of the cache, queried by `token`.
    fn attend(&self, cache: &KvCache, token: u32) -> Vector {
        let q = apply(&self.wq, &self.embed[token as usize % self.embed.len()]);
        let scale = 1.0 / (DIM as f32).sqrt();
        let scores: Vec<f32> = cache.keys().map(|k| dot(&q, k) * scale).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut out = [0.0; DIM];
        let mut total = 0.0;
        for (score, v) in scores.iter().zip(cache.values()) {
            let w = (score - max).exp();
            total += w;
            for (o, x) in out.iter_mut().zip(v) {
                *o += w * x;
            }
        }
        if total > 0.0 {
            out.iter_mut().for_each(|o| *o /= total);
        }
        out
    }
}

/// A session's context: one key and one value per word, oldest first, in storage the
/// session store allocated. When full, the oldest half is dropped (a sliding window).
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<f32>,
    values: Vec<f32>,
    capacity: usize,
}

impl KvCache {
    /// A cache over storage for `capacity` words (`keys` and `values` must have room for
    /// `capacity * DIM` floats each).
    pub fn new(keys: Vec<f32>, values: Vec<f32>, capacity: usize) -> KvCache {
        KvCache {
            keys,
            values,
            capacity: capacity.max(2),
        }
    }

    /// Words in the context.
    pub fn len(&self) -> usize {
        self.keys.len() / DIM
    }

    /// Whether the context is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes of storage the cache holds.
    pub fn bytes(&self) -> usize {
        (self.keys.capacity() + self.values.capacity()) * std::mem::size_of::<f32>()
    }

    fn push(&mut self, key: &Vector, value: &Vector) {
        if self.len() >= self.capacity {
            let keep_from = (self.capacity / 2) * DIM;
            self.keys.drain(..keep_from);
            self.values.drain(..keep_from);
        }
        self.keys.extend_from_slice(key);
        self.values.extend_from_slice(value);
    }

    fn keys(&self) -> impl Iterator<Item = &[f32]> {
        self.keys.chunks_exact(DIM)
    }

    fn values(&self) -> impl Iterator<Item = &[f32]> {
        self.values.chunks_exact(DIM)
    }
}

fn random_vector(rng: &mut Rng) -> Vector {
    let mut v = [0.0; DIM];
    v.iter_mut().for_each(|x| *x = rng.normal());
    v
}

fn normalize(mut v: Vector) -> Vector {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn apply(m: &Matrix, v: &Vector) -> Vector {
    let mut out = [0.0; DIM];
    for (o, row) in out.iter_mut().zip(m) {
        *o = dot(row, v);
    }
    out
}

/// Samples an index from `softmax(logits / temperature)`.
fn sample(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = logits
        .iter()
        .map(|l| ((l - max) / temperature).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let mut pick = rng.next_f32() * total;
    for (i, w) in weights.iter().enumerate() {
        pick -= w;
        if pick <= 0.0 {
            return i as u32;
        }
    }
    (weights.len() - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> KvCache {
        KvCache::new(
            Vec::with_capacity(capacity * DIM),
            Vec::with_capacity(capacity * DIM),
            capacity,
        )
    }

    #[test]
    fn the_vocabulary_round_trips_known_words() {
        let model = Model::build(CORPUS, 1);
        assert!(model.vocab().len() > 200, "{}", model.vocab().len());
        let tokens = model.vocab().encode("The keeper climbs the stairs.");
        assert!(tokens.iter().all(|&t| t != 0));
        assert_eq!(
            model.vocab().decode(&tokens),
            "the keeper climbs the stairs."
        );
        assert_eq!(model.vocab().encode("zeppelin"), vec![0]);
    }

    #[test]
    fn generation_is_deterministic_and_depends_on_the_version_and_context() {
        let v1 = Model::build(CORPUS, 1);
        let v2 = Model::build(CORPUS, 2);
        let run = |m: &Model, prompt: &str| {
            let mut c = cache(64);
            let tokens = m.generate(&mut c, prompt, 12, &mut Rng::new(7));
            (m.vocab().decode(&tokens), c.len())
        };
        let (a, len) = run(&v1, "the keeper of the lighthouse");
        assert_eq!(len, 5 + 12);
        assert_eq!(run(&v1, "the keeper of the lighthouse").0, a);
        assert_ne!(run(&v2, "the keeper of the lighthouse").0, a);
        assert_ne!(run(&v1, "the river starts in the hills").0, a);
        assert!(a.split(' ').count() >= 8, "{a}");
    }

    #[test]
    fn the_cache_slides_within_its_storage() {
        let model = Model::build(CORPUS, 1);
        let mut c = cache(16);
        let bytes = c.bytes();
        model.generate(&mut c, "the sea is grey", 100, &mut Rng::new(1));
        assert!(c.len() <= 16 && c.len() >= 8, "{}", c.len());
        assert_eq!(c.bytes(), bytes, "no reallocation when the window slides");
    }
}
