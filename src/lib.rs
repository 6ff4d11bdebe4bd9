//! Word- and character-level recurrent language models on libtorch.
