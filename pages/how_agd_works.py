"""How AGD works: the derivation of automatic gradient descent in plain words, with live pictures.

Thin page: widgets -> agd_viz.views.explain (numbers; numpy, no torch even for the depth demo) and
agd_viz.views.explain_text (the words, cited from agd_viz.paper) -> agd_viz.charts.explain
(figures). No st.set_page_config: it runs alone and under st.navigation.
"""

import math

import streamlit as st

from agd_viz.charts import explain as figs
from agd_viz.fmt import md_escape
from agd_viz.views import explain as ex
from agd_viz.views.explain_text import HEADERS, LATEX, TEXT, counterexample
from app_widgets import chart


@st.cache_data(show_spinner=False, max_entries=64)
def _depth_demo(depth: int, width: int, data: str):
    return ex.depth_demo(depth, width, seed=0, data=data)


@st.cache_data(show_spinner=False, max_entries=16)
def _depth_totals(width: int, data: str):
    return ex.depth_totals((2, 4, 8, 16, 32), width, seed=0, data=data)


@st.cache_data(show_spinner=False, ttl=15)
def _latest_agd_point():
    return ex.latest_agd_point()


@st.cache_data(show_spinner=False, ttl=15)
def _latest_agd_curve():
    return ex.latest_agd_curve()


def _chart(fig, key: str) -> None:
    chart(fig, width="stretch", key=key)


st.title("How AGD works")
st.markdown(TEXT["intro"])

# ---------------------------------------------------------------------------------------------
st.header(HEADERS[0])
st.markdown(TEXT["problem"])
st.table(ex.optimiser_table(), hide_index=True)
st.caption(TEXT["table_caption"])

# ---------------------------------------------------------------------------------------------
st.header(HEADERS[1])
st.subheader("Vectors")
st.markdown(TEXT["vectors"])
st.latex(LATEX["norms"])
col_ctrl, col_fig = st.columns([1, 2])
with col_ctrl:
    v1 = st.slider("v₁", -2.0, 2.0, 1.0, 0.05, key="how_v1")
    v2 = st.slider("v₂", -2.0, 2.0, 0.5, 0.05, key="how_v2")
    norms = ex.vector_norms([v1, v2])
    st.metric("Manhattan ‖v‖₁", f"{norms['l1']:.3f}")
    st.metric("Euclidean ‖v‖₂", f"{norms['l2']:.3f}")
    st.metric("infinity ‖v‖∞", f"{norms['linf']:.3f}")
with col_fig:
    _chart(figs.fig_norm_balls(ex.norm_balls([v1, v2])), "how_fig_norms")

st.subheader("Matrices")
st.markdown(TEXT["matrices"])
st.latex(LATEX["matrix_norms"])
c1, c2, c3 = st.columns(3)
with c1:
    kind = st.selectbox("Matrix", ex.MATRIX_KINDS, index=1, key="how_kind")
    rank = st.slider("rank of the signal", 1, 16, 3, key="how_rank", disabled=kind != "low-rank+noise",
                     help="Used by 'low-rank+noise'; capped at min(m, n).")
with c2:
    m = st.slider("rows m", 1, 64, 32, key="how_m")
    n = st.slider("columns n", 1, 64, 16, key="how_n")
with c3:
    noise = st.slider("noise", 0.0, 1.0, 0.1, 0.01, key="how_noise", disabled=kind != "low-rank+noise",
                      help="Operator norm of the added Gaussian noise, roughly, relative to the signal's.")
M = ex.build_matrix(kind, m, n, rank=min(rank, m, n), noise=noise, seed=0)
summary = ex.matrix_summary(M)
k1, k2, k3, k4 = st.columns(4)
k1.metric("spectral ‖M‖*", f"{summary['spectral']:.3f}")
k2.metric("Frobenius ‖M‖_F", f"{summary['frobenius']:.3f}")
k3.metric("rank", f"{summary['rank']}")
k4.metric("stable rank", f"{summary['stable_rank']:.2f}")
f1, f2 = st.columns(2)
with f1:
    _chart(figs.fig_singular_values(summary), "how_fig_sv")
with f2:
    _chart(figs.fig_matrix(M), "how_fig_matrix")
st.caption(TEXT["matrices_caption"])

# ---------------------------------------------------------------------------------------------
st.header(HEADERS[2])
st.markdown(TEXT["derivation"])

st.subheader(f"Step 1 — functional expansion ({ex.SECTIONS['functional_expansion']})")
st.latex(LATEX["expansion"])
st.markdown(TEXT["step1"])

st.subheader(f"Step 2 — architectural perturbation bound ({ex.SECTIONS['deep_relative_trust']})")
st.latex(LATEX["lemma4"])
st.markdown(TEXT["step2"])
with st.expander("Why not a bound on the relative change ‖Δf‖/‖f‖?", icon=":material/calculate:"):
    st.markdown(counterexample(ex.relative_counterexample()))

st.subheader(f"Step 3 — majorise, then minimise ({ex.SECTIONS['majorise_minimise']})")
st.latex(LATEX["penalty"])
st.latex(LATEX["update"])
st.latex(LATEX["minimise"])
st.latex(LATEX["eta"])
st.markdown(TEXT["step3"])

# ---------------------------------------------------------------------------------------------
st.header(HEADERS[3])
stored = _latest_agd_point()
G = st.slider("G, the architecture-weighted gradient size", 0.0, 10.0, 1.0, 0.01, key="how_G",
              help="G = (1/L) Σ_k √(d_k/d_(k−1)) ‖∇W_k‖_F, measured by AGD at every step.")
eta = ex.eta_of_G(G)
m1, m2, m3 = st.columns(3)
m1.metric("G", f"{G:.3f}")
m2.metric("η = log((1+√(1+4G))/2)", f"{eta:.4f}")
m3.metric(r"output change bound $e^\eta - 1$ (× √d_L)", f"{math.expm1(eta):.4f}")
if stored:
    st.caption(f"★ marks the latest AGD run in the run store, {md_escape(stored['name'])} (run {stored['run_id']}): "
               f"G = {stored['G']:.4g} and η = {stored['eta']:.4g} at step {stored['step']}.")
else:
    st.caption(TEXT["no_store"])
g1, g2 = st.columns(2)
with g1:
    _chart(figs.fig_eta_curve(G, stored), "how_fig_eta")
with g2:
    _chart(figs.fig_mm_bound(ex.mm_curve(G)), "how_fig_mm")
st.markdown(TEXT["eta_shape"])

st.subheader("What η does during training")
st.markdown(TEXT["eta_in_training"])
curve = _latest_agd_curve()
if curve:
    _chart(figs.fig_eta_history(curve), "how_fig_eta_history")
    st.caption(f"{md_escape(curve['name'])}: {md_escape(curve['setting'])}. {TEXT['eval_note']}")
else:
    st.caption(TEXT["no_curve"])
st.markdown(TEXT["lemma8"])

st.subheader("Sharing η among the layers")
st.markdown(TEXT["sharing"] + f" Input {ex.SPLIT_DIMS[0]} and output {ex.SPLIT_DIMS[1]}, as for the digits data.")
s1, s2 = st.columns(2)
with s1:
    split_depth = st.slider("depth L", 1, 32, 8, key="how_split_depth")
with s2:
    split_width = st.select_slider("width", [16, 32, 64, 128, 256, 512, 1024], 128, key="how_split_width")
split = ex.layer_split(split_depth, split_width, *ex.SPLIT_DIMS, G)
_chart(figs.fig_layer_split(split), "how_fig_split")
st.dataframe(split[list(ex.SPLIT_COLUMNS)], hide_index=True, key="how_split_table",
             column_config={key: st.column_config.NumberColumn(title, format=form) if form else title
                            for key, (title, form) in ex.SPLIT_COLUMNS.items()})
st.markdown(TEXT["drift"])

# ---------------------------------------------------------------------------------------------
st.header(HEADERS[4])
st.markdown(TEXT["depth"])
d1, d2, d3, d4 = st.columns(4)
with d1:
    demo_depth = st.slider("depth", 2, 32, 16, key="how_demo_depth")
with d2:
    demo_width = st.select_slider("width", [32, 64, 128], 64, key="how_demo_width")
with d3:
    demo_data = st.radio("data", ex.DEMO_DATA, horizontal=True, key="how_demo_data",
                         help="digits: a batch of 128 training images; random: Gaussian inputs, random labels.")
with d4:
    demo_norm = st.radio("measure", ex.DEMO_NORMS, horizontal=True, key="how_demo_norm", format_func=ex.NORM_LABELS.get,
                         help=TEXT["measure_help"])
compare_depths = st.toggle("Compare depths 2 to 32", value=True, key="how_demo_compare")

with st.spinner("One forward and backward pass…"):
    raw_demo = _depth_demo(demo_depth, demo_width, demo_data)
    demo = ex.in_norm(raw_demo, demo_norm)
    totals = ex.in_norm(_depth_totals(demo_width, demo_data), demo_norm) if compare_depths else None
symbol, last = ex.NORM_SYMBOLS[demo_norm], demo.iloc[-1]
e1, e2, e3, e4 = st.columns(4)
e1.metric("Adam: ∏(1 + rel_k) − 1", f"{last['adam_bound']:.3f}")
e2.metric("AGD: ∏(1 + rel_k) − 1", f"{last['agd_bound']:.3f}")
e3.metric("Muon: ∏(1 + rel_k) − 1", f"{last['muon_bound']:.3f}")
e4.metric("AGD's η", f"{last['eta']:.3f}", help=r"$e^\eta - 1$ caps AGD's product in the operator norm.")
p1, p2 = st.columns(2)
with p1:
    _chart(figs.fig_depth_layers(demo, symbol), "how_fig_demo_layers")
with p2:
    _chart(figs.fig_depth_bound(demo, symbol), "how_fig_demo_bound")
if totals is not None:
    _chart(figs.fig_depth_totals(totals, demo_depth, symbol), "how_fig_demo_totals")
st.caption(TEXT["depth_caption"])

# ---------------------------------------------------------------------------------------------
st.header(HEADERS[5])
st.markdown(TEXT["muon"])
_chart(figs.fig_update_srank(raw_demo), "how_fig_update_srank")

st.divider()
st.caption(TEXT["reference"])
