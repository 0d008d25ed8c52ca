"""The recurrent layer every base can end with: a GRU or LSTM with episode-start masks.

Recurrent bases accept two input layouts:

* step mode, ``B == N``: one step of N envs; ``masks`` (0 at an episode start) zero the
  incoming state first;
* sequence mode, ``B == T * N``: T steps of N sequences, flattened time-major (row
  ``t * N + n``), with ``rnn_hxs`` the state *before* step 0. The net runs one RNN call
  per span between time steps where any mask is 0, not one call per step, and returns
  the state after step T-1.

An LSTM's ``(h, c)`` are packed side by side into one vector of size ``2 * hidden`` so
storage keeps a single hidden-state tensor.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from a2c_ppo.config import RNN_TYPES


class NNBase(nn.Module):
    """Shared recurrent machinery: an optional GRU/LSTM layer with mask handling."""

    def __init__(self, recurrent: bool, recurrent_input_size: int, hidden_size: int, rnn_type: str = "gru") -> None:
        super().__init__()
        self._hidden_size = hidden_size
        self._recurrent = recurrent
        self.rnn_type = rnn_type
        if not recurrent:
            return
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"unknown recurrent type {rnn_type!r}: use one of {', '.join(RNN_TYPES)}")
        rnn_cls = nn.GRU if rnn_type == "gru" else nn.LSTM
        self.rnn = rnn_cls(recurrent_input_size, hidden_size)
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)
            if rnn_type == "lstm" and name == "bias_ih_l0":
                # Forget-gate bias 1 (gate order i, f, g, o): remember by default.
                with torch.no_grad():
                    param[hidden_size : 2 * hidden_size].fill_(1.0)

    @property
    def is_recurrent(self) -> bool:
        return self._recurrent

    @property
    def recurrent_hidden_state_size(self) -> int:
        if not self._recurrent:
            return 1
        return 2 * self._hidden_size if self.rnn_type == "lstm" else self._hidden_size

    @property
    def output_size(self) -> int:
        return self._hidden_size

    # (N, H') packed vector <-> the state nn.GRU / nn.LSTM take, with a layer dim of 1.
    def _unpack(self, hxs: torch.Tensor):
        if self.rnn_type == "lstm":
            h, c = hxs.chunk(2, dim=-1)
            return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()
        return hxs.unsqueeze(0).contiguous()

    def _pack(self, state) -> torch.Tensor:
        if self.rnn_type == "lstm":
            return torch.cat([state[0].squeeze(0), state[1].squeeze(0)], dim=-1)
        return state.squeeze(0)

    def _forward_rnn(
        self, x: torch.Tensor, hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, in)``, ``hxs (N, H')``, ``masks (B, 1)`` -> ``(out (B, hidden), hxs (N, H'))``."""
        N = hxs.size(0)
        masks = masks.to(x.dtype).reshape(-1, 1)
        if x.size(0) == N:  # step mode
            out, state = self.rnn(x.unsqueeze(0), self._unpack(hxs * masks))
            return out.squeeze(0), self._pack(state)
        if x.size(0) % N != 0:
            raise ValueError(f"recurrent input of {x.size(0)} rows is not T x {N} sequences")
        T = x.size(0) // N
        x = x.view(T, N, x.size(1))
        masks = masks.view(T, N)
        # Time steps (after the first) where some sequence starts a new episode: the RNN
        # runs uninterrupted over each span between them.
        starts = ((masks[1:] == 0).any(dim=-1).nonzero().squeeze(-1) + 1).cpu().tolist()
        bounds = [0] + starts + [T]
        outputs = []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            hxs = hxs * masks[begin].view(N, 1)
            out, state = self.rnn(x[begin:end], self._unpack(hxs))
            hxs = self._pack(state)
            outputs.append(out)
        return torch.cat(outputs, dim=0).view(T * N, -1), hxs
