"""The few functions of Debian's ``libspandsp2`` (0.0.6) that a fax terminal needs: G.711 pass-through
(``fax_*``) and T.38 (``t38_terminal_*``, ``t38_core_*``).

Bound with cffi in ABI mode (``dlopen``): no compiler and no ``-dev`` headers are needed at run time,
only the shared library. The declarations below copy the prototypes of ``spandsp/fax.h``,
``spandsp/t30_api.h``, ``spandsp/t38_terminal.h`` and ``spandsp/t38_core.h``; the states stay opaque
(spandsp allocates them when ``fax_init`` / ``t38_terminal_init`` get NULL), and ``t30_stats_t`` is declared field by field as in ``spandsp/t30.h`` 0.0.6
(the ``rtp_events``/``rtn_events`` fields there are under ``#if 0``).
"""

from __future__ import annotations

import ctypes.util
from typing import Any

import cffi  # type: ignore[import-untyped]

CDEF = """
typedef struct fax_state_s fax_state_t;
typedef struct t30_state_s t30_state_t;
typedef struct logging_state_s logging_state_t;

typedef struct {
    int bit_rate;
    int error_correcting_mode;
    int pages_tx;
    int pages_rx;
    int pages_in_file;
    int x_resolution;
    int y_resolution;
    int width;
    int length;
    int image_size;
    int encoding;
    int bad_rows;
    int longest_bad_row_run;
    int error_correcting_mode_retries;
    int current_status;
} t30_stats_t;

typedef void (t30_phase_e_handler_t)(t30_state_t *s, void *user_data, int completion_code);

fax_state_t *fax_init(fax_state_t *s, int calling_party);
int fax_free(fax_state_t *s);
int fax_rx(fax_state_t *s, int16_t *amp, int len);
int fax_tx(fax_state_t *s, int16_t *amp, int max_len);
void fax_set_transmit_on_idle(fax_state_t *s, int transmit_on_idle);
t30_state_t *fax_get_t30_state(fax_state_t *s);
logging_state_t *fax_get_logging_state(fax_state_t *s);

int t30_set_tx_ident(t30_state_t *s, const char *id);
const char *t30_get_rx_ident(t30_state_t *s);
void t30_set_rx_file(t30_state_t *s, const char *file, int stop_page);
void t30_set_tx_file(t30_state_t *s, const char *file, int start_page, int stop_page);
int t30_set_ecm_capability(t30_state_t *s, int enabled);
int t30_set_supported_compressions(t30_state_t *s, int supported_compressions);
void t30_set_phase_e_handler(t30_state_t *s, t30_phase_e_handler_t *handler, void *user_data);
void t30_get_transfer_statistics(t30_state_t *s, t30_stats_t *t);
void t30_terminate(t30_state_t *s);
const char *t30_completion_code_to_str(int result);

typedef struct t38_terminal_state_s t38_terminal_state_t;
typedef struct t38_core_state_s t38_core_state_t;
typedef int (t38_tx_packet_handler_t)(t38_core_state_t *s, void *user_data, const uint8_t *buf, int len, int count);

t38_terminal_state_t *t38_terminal_init(t38_terminal_state_t *s, int calling_party,
                                        t38_tx_packet_handler_t *tx_packet_handler, void *tx_packet_user_data);
int t38_terminal_free(t38_terminal_state_t *s);
int t38_terminal_send_timeout(t38_terminal_state_t *s, int samples);
void t38_terminal_set_config(t38_terminal_state_t *s, int config);
void t38_terminal_set_tep_mode(t38_terminal_state_t *s, int use_tep);
void t38_terminal_set_fill_bit_removal(t38_terminal_state_t *s, int remove);
t30_state_t *t38_terminal_get_t30_state(t38_terminal_state_t *s);
t38_core_state_t *t38_terminal_get_t38_core_state(t38_terminal_state_t *s);
int t38_core_rx_ifp_packet(t38_core_state_t *s, const uint8_t *buf, int len, uint16_t seq_no);
void t38_set_t38_version(t38_core_state_t *s, int t38_version);
void t38_set_data_rate_management_method(t38_core_state_t *s, int method);
void t38_set_max_datagram_size(t38_core_state_t *s, int max_datagram_size);
void t38_set_fastest_image_data_rate(t38_core_state_t *s, int max_rate);
"""

# spandsp/t30.h: T30_SUPPORT_T4_1D_COMPRESSION | T30_SUPPORT_T4_2D_COMPRESSION | T30_SUPPORT_T6_COMPRESSION
SUPPORT_T4_T6 = 0x02 | 0x04 | 0x08
# spandsp/t38_core.h: t38_set_data_rate_management_method: 1 passes TCF across the link (transferredTCF)
T38_TRANSFERRED_TCF = 1
# spandsp/t30.h: T30_ERR_OK
T30_ERR_OK = 0


class SpandspUnavailable(RuntimeError):
    """libspandsp is not installed (Debian: ``apt-get install libspandsp2``)."""


ffi = cffi.FFI()
ffi.cdef(CDEF)
_lib: Any = None


def lib() -> Any:
    """The loaded library, opened on first use so that importing this module never fails."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
        try:
            _lib = ffi.dlopen(name)
        except OSError as exc:
            raise SpandspUnavailable(f"cannot load {name}: {exc}") from exc
    return _lib


def completion_text(code: int) -> str:
    """spandsp's wording of a T.30 completion code (``T30_ERR_*``)."""
    return str(ffi.string(lib().t30_completion_code_to_str(code)).decode("ascii", "replace"))
