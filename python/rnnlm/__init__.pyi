"""Types of the `rnnlm` package (see its docstrings for the meaning of each call)."""
import os
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch

TORCH_VERSION: str

_Path = Union[str, os.PathLike]
_Base = Union[None, float, int, str]

class State:
    @property
    def batch(self) -> int: ...
    def select(self, indices: Union[Sequence[int], torch.Tensor]) -> "State": ...
    @staticmethod
    def concat(states: Sequence["State"]) -> "State": ...

class Rescored:
    logprob: List[float]
    backward_logprob: Optional[List[float]]
    lm_logprob: List[float]
    score: List[float]
    rank: List[int]
    best: Optional[int]

class Model:
    path: str
    backward_path: Optional[str]
    device: str
    oov: str
    oov_penalty: float
    batch_size: int
    def __init__(
        self,
        path: _Path,
        device: str = "cpu",
        oov: str = "divide",
        oov_penalty: float = 0.0,
        backward: Optional[_Path] = None,
        batch_size: int = 64,
    ) -> None: ...
    def __contains__(self, word: str) -> bool: ...
    @property
    def level(self) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def reverse(self) -> bool: ...
    def token_id(self, token: str) -> Optional[int]: ...
    def token(self, token_id: int) -> str: ...
    def tokenize(self, sentence: str) -> List[str]: ...
    def score(self, sentence: str, bos: bool = True, eos: bool = True, base: _Base = None) -> float: ...
    def full_scores(
        self, sentence: str, bos: bool = True, eos: bool = True, base: _Base = None
    ) -> List[Tuple[str, float, bool]]: ...
    def perplexity(self, sentence: str) -> float: ...
    def score_batch(self, sentences: Sequence[str], base: _Base = None, model: str = "forward") -> List[float]: ...
    def evaluate(self, path_or_lines: Union[_Path, Iterable[str]], oov: str = "unk", oov_penalty: float = 0.0) -> dict: ...
    def rescore(
        self,
        hypotheses: Sequence[str],
        am: Optional[Sequence[float]] = None,
        ngram: Optional[Sequence[float]] = None,
        lm_weight: float = 1.0,
        length_penalty: float = 0.0,
        ngram_weight: float = 0.0,
        backward_weight: float = 0.0,
        ngram_base: Union[int, str] = 10,
    ) -> Rescored: ...
    def rescore_file(
        self,
        input: _Path,
        output: _Path,
        am_column: Optional[str] = None,
        ngram_column: Optional[str] = None,
        text_column: str = "sentence",
        group_column: Optional[str] = None,
        ngram_base: Union[int, str] = 10,
        format: str = "csv",
        columns: Optional[Sequence[str]] = None,
        lm_weight: float = 1.0,
        length_penalty: float = 0.0,
        ngram_weight: float = 0.0,
        backward_weight: float = 0.0,
        per_token: Optional[_Path] = None,
        skip_bad: bool = False,
        digits: int = 4,
        prefix_sharing: bool = True,
    ) -> dict: ...
    def initial_state(self, batch: int = 1) -> State: ...
    def step(self, state: State, token_ids: Union[Sequence[Optional[int]], torch.Tensor]) -> Tuple[torch.Tensor, State]: ...
    def oov_log_share(self, token: str) -> float: ...

def cached_model(path: _Path, **settings: object) -> Model: ...
