"""How AGD works: the derivation of automatic gradient descent in plain words, with live pictures.

Thin page: widgets -> agd_viz.views.explain (numbers; numpy, no torch even for the depth demo) ->
agd_viz.charts.explain (figures). No st.set_page_config: it runs alone and under st.navigation.
"""

import math

import streamlit as st

from agd_viz.charts import explain as figs
from agd_viz.fmt import md_escape
from agd_viz.views import explain as ex


@st.cache_data(show_spinner=False, max_entries=64)
def _depth_demo(depth: int, width: int, data: str):
    return ex.depth_demo(depth, width, seed=0, data=data)


@st.cache_data(show_spinner=False, max_entries=16)
def _depth_totals(width: int, data: str):
    return ex.depth_totals((2, 4, 8, 16, 32), width, seed=0, data=data)


@st.cache_data(show_spinner=False, ttl=15)
def _latest_agd_point():
    return ex.latest_agd_point()


st.title("How AGD works")
st.markdown(
    "Automatic gradient descent (AGD) trains a network with no learning rate and no schedule. "
    "This page walks through why that is possible, following "
    f"Bernstein, Mingard, Huang, Azizan & Yue (2023), *Automatic Gradient Descent: Deep Learning "
    f"without Hyperparameters* ([arXiv:2304.05187]({ex.PAPER_URL})). The words and figures are ours; "
    "equations are cited to the paper by section and written in this app's notation. "
    "Every figure is live: move a control and its numbers change."
)

# ---------------------------------------------------------------------------------------------
st.header("1 · The problem: a learning rate for every network")
st.markdown(
    "Gradient descent moves each weight by *learning rate × gradient*. The right learning rate "
    "depends on the network: make it deeper or wider and yesterday's value is either too large "
    "(the loss blows up) or too small (nothing moves). On top come a warm-up and a decay "
    "schedule, each with knobs of its own, so every new architecture costs a grid of trial runs. "
    "AGD's idea is that the architecture already says how far a step may go: if we can bound how "
    "much the network's output moves when its weights move, the step size can be *computed* "
    "instead of searched for."
)
st.table(ex.optimiser_table(), hide_index=True)
st.caption(
    f"Our summary of {ex.SECTIONS['comparison_table']} of the paper. Width/depth scaling: the "
    "method says how to change its settings when the network grows. Memory: the weights plus the "
    "optimiser's per-weight buffers (Adam keeps two running averages, momentum one, AGD none)."
)

# ---------------------------------------------------------------------------------------------
st.header("2 · Measuring size")
st.subheader("Vectors")
st.markdown(
    "To call a step *small* we first need a notion of size. For a vector there are several "
    "sensible ones: the Manhattan norm adds up the absolute entries, the Euclidean norm is the "
    "straight-line length, and the infinity norm keeps only the largest entry. Each curve below "
    "is the set of vectors with the same size as yours in one of these norms."
)
st.latex(
    r"\|v\|_1 = \sum_i |v_i| \qquad \|v\|_2 = \sqrt{\textstyle\sum_i v_i^2} \qquad "
    r"\|v\|_\infty = \max_i |v_i|"
)
col_ctrl, col_fig = st.columns([1, 2])
with col_ctrl:
    v1 = st.slider("v₁", -2.0, 2.0, 1.0, 0.05, key="how_v1")
    v2 = st.slider("v₂", -2.0, 2.0, 0.5, 0.05, key="how_v2")
    norms = ex.vector_norms([v1, v2])
    st.metric("Manhattan ‖v‖₁", f"{norms['l1']:.3f}")
    st.metric("Euclidean ‖v‖₂", f"{norms['l2']:.3f}")
    st.metric("infinity ‖v‖∞", f"{norms['linf']:.3f}")
with col_fig:
    st.plotly_chart(figs.fig_norm_balls(ex.norm_balls([v1, v2])), width="stretch", key="how_fig_norms")

st.subheader("Matrices")
st.markdown(
    "A weight matrix acts on vectors, so its most useful size is how much it can stretch one: "
    r"the **operator (spectral) norm** $\|W\|_*$, the largest singular value. The **Frobenius "
    r"norm** $\|W\|_F$ treats the matrix as one long vector: the root of the sum of all squared "
    "singular values. The **rank** counts the non-zero singular values; the **stable rank** "
    r"$\|W\|_F^2/\|W\|_*^2$ counts the directions that carry a sizeable share of the stretch. It "
    "never exceeds the rank, but unlike the rank it does not jump when a little noise is added."
)
st.latex(
    r"\|W\|_* = \sigma_{\max}(W) \qquad \|W\|_F = \sqrt{\textstyle\sum_i \sigma_i^2} \qquad "
    r"1 \le \operatorname{srank}(W) = \frac{\|W\|_F^2}{\|W\|_*^2} \le \operatorname{rank}(W)"
)
c1, c2, c3 = st.columns(3)
with c1:
    kind = st.selectbox("Matrix", ex.MATRIX_KINDS, index=1, key="how_kind")
    rank = st.slider(
        "rank of the signal", 1, 16, 3, key="how_rank", disabled=kind != "low-rank+noise",
        help="Used by 'low-rank+noise'; capped at min(m, n).",
    )
with c2:
    m = st.slider("rows m", 1, 64, 32, key="how_m")
    n = st.slider("columns n", 1, 64, 16, key="how_n")
with c3:
    noise = st.slider(
        "noise", 0.0, 1.0, 0.1, 0.01, key="how_noise", disabled=kind != "low-rank+noise",
        help="Operator norm of the added Gaussian noise, roughly, relative to the signal's.",
    )
M = ex.build_matrix(kind, m, n, rank=min(rank, m, n), noise=noise, seed=0)
summary = ex.matrix_summary(M)
k1, k2, k3, k4 = st.columns(4)
k1.metric("spectral ‖M‖*", f"{summary['spectral']:.3f}")
k2.metric("Frobenius ‖M‖_F", f"{summary['frobenius']:.3f}")
k3.metric("rank", f"{summary['rank']}")
k4.metric("stable rank", f"{summary['stable_rank']:.2f}")
f1, f2 = st.columns(2)
with f1:
    st.plotly_chart(figs.fig_singular_values(summary), width="stretch", key="how_fig_sv")
with f2:
    st.plotly_chart(figs.fig_matrix(M), width="stretch", key="how_fig_matrix")
st.caption(
    r"AGD starts every layer as an orthogonal matrix scaled to $\|W_k\|_* = \sqrt{d_k/d_{k-1}}$, "
    "and the Live training page logs `w_spec`, `w_fro` and `w_srank` of every layer: these same "
    "three numbers."
)

# ---------------------------------------------------------------------------------------------
st.header("3 · The derivation in three steps")
st.markdown(
    r"Write the network's weights as $W_1, \dots, W_L$ (layer $k$ maps $d_{k-1}$ numbers to "
    r"$d_k$), its output on input $x$ as $f(x)$, and the loss $\mathcal{L}$ as the average of "
    r"$\ell(f(x), y)$ over the data $S$."
)

st.subheader(f"Step 1 — functional expansion ({ex.SECTIONS['functional_expansion']})")
st.latex(
    r"\begin{aligned}\mathcal{L}(W+\Delta W) = {} & \mathcal{L}(W) + \nabla_W\mathcal{L}^{\top}\Delta W \\"
    r" & + \frac{1}{|S|}\sum_{(x,y)\in S}\underbrace{\nabla_f\ell^{\top}\big(\Delta f(x)"
    r" - \nabla_W f(x)\,\Delta W\big)}_{\text{the network is not linear}} \\"
    r" & + \frac{1}{|S|}\sum_{(x,y)\in S}\underbrace{\ell(f+\Delta f) - \ell(f)"
    r" - \nabla_f\ell^{\top}\Delta f}_{\text{Bregman divergence of the loss}}\end{aligned}"
)
st.markdown(
    "*Intuition:* the usual first-order guess of the new loss is off for two separate reasons, "
    "the network bends in its weights and the loss bends in the output, and the second one is a "
    "Bregman divergence that depends only on how far the **output** moves (for the square loss "
    r"it is simply $\|\Delta f\|_2^2 / 2d_L$)."
)

st.subheader(f"Step 2 — architectural perturbation bound ({ex.SECTIONS['deep_relative_trust']})")
st.latex(
    r"\frac{\|\Delta f(x)\|_2}{\|f(x)\|_2} \;\le\; \prod_{k=1}^{L}"
    r"\Big(1 + \frac{\|\Delta W_k\|_*}{\|W_k\|_*}\Big) - 1"
)
st.markdown(
    "*Intuition (deep relative trust):* each layer passes on its input's relative change and adds "
    r"its own, so relative changes compound multiplicatively: $L$ layers each nudged by a "
    r"fraction $\varepsilon$ can move the output by $(1+\varepsilon)^L - 1 \approx e^{L\varepsilon} - 1$ "
    "(for the bias-free ReLU networks of the paper, under its conditions)."
)

st.subheader(f"Step 3 — majorise, then minimise ({ex.SECTIONS['majorise_minimise']})")
st.latex(
    r"\Delta W_k = -\frac{\eta}{L}\sqrt{\frac{d_k}{d_{k-1}}}\;"
    r"\frac{\nabla_{W_k}\mathcal{L}}{\|\nabla_{W_k}\mathcal{L}\|_F},\qquad "
    r"G = \frac{1}{L}\sum_{k=1}^{L}\sqrt{\frac{d_k}{d_{k-1}}}\,\|\nabla_{W_k}\mathcal{L}\|_F"
)
st.latex(
    r"\eta^\star = \arg\min_{\eta \ge 0}\Big[-\eta\,G + \tfrac12\big(e^{\eta}-1\big)^2\Big]"
    r"\;\Longrightarrow\; e^{2\eta^\star} - e^{\eta^\star} = G"
)
st.latex(r"\eta^\star = \log\frac{1+\sqrt{1+4G}}{2}")
st.markdown(
    r"*Intuition:* give every layer the same relative step $\eta/L$ (its weights have operator "
    r"norm $\sqrt{d_k/d_{k-1}}$, its step has that size times $\eta/L$), so by step 2 the output "
    r"moves by at most $e^\eta - 1$; step 1 then bounds the loss by a gain $-\eta G$ from going "
    r"downhill plus a penalty $\tfrac12(e^\eta - 1)^2$ for curvature (the paper's bound in "
    r"simplified form), and the best $\eta$ for that bound has a closed form. No learning rate is "
    "left to choose."
)

# ---------------------------------------------------------------------------------------------
st.header("4 · The update itself")
stored = _latest_agd_point()
G = st.slider(
    "G, the architecture-weighted gradient size", 0.0, 10.0, 1.0, 0.01, key="how_G",
    help="G = (1/L) Σ_k √(d_k/d_(k−1)) ‖∇W_k‖_F, measured by AGD at every step.",
)
eta = ex.eta_of_G(G)
m1, m2, m3 = st.columns(3)
m1.metric("G", f"{G:.3f}")
m2.metric("η = log((1+√(1+4G))/2)", f"{eta:.4f}")
m3.metric(r"output change bound $e^\eta - 1$", f"{math.expm1(eta):.4f}")
if stored:
    st.caption(
        f"★ marks the latest AGD run in the run store, {md_escape(stored['name'])} (run {stored['run_id']}): "
        f"G = {stored['G']:.4g} and η = {stored['eta']:.4g} at step {stored['step']}."
    )
else:
    st.caption(
        "No AGD run in the run store yet: start one on the Live training page and the G it "
        "measures will be marked on this curve."
    )
g1, g2 = st.columns(2)
with g1:
    st.plotly_chart(figs.fig_eta_curve(G, stored), width="stretch", key="how_fig_eta")
with g2:
    st.plotly_chart(figs.fig_mm_bound(ex.mm_curve(G)), width="stretch", key="how_fig_mm")
st.markdown(
    r"For a small gradient $\eta \approx G$: AGD behaves like gradient descent on normalised "
    r"steps. For a large one $\eta$ grows only like $\tfrac12\log G$, so a sudden spike in the "
    r"gradient cannot throw the weights far. Because $G$ shrinks as training approaches a minimum, "
    r"$\eta$ falls on its own: the schedule is automatic."
)

st.subheader("Sharing η among the layers")
st.markdown(
    r"$\eta$ is a budget for the whole network. Each of the $L$ layers gets $\eta/L$ of it, "
    r"measured relative to the layer's own size: layer $k$ moves by "
    r"$\|\Delta W_k\|_F = \frac{\eta}{L}\sqrt{d_k/d_{k-1}}$. At AGD's initialisation "
    r"$\|W_k\|_F = \sqrt{d_k/d_{k-1}}\,\sqrt{\min(d_k, d_{k-1})}$, so the relative change is "
    r"$\frac{\eta}{L}/\sqrt{\min(d_k, d_{k-1})}$ in Frobenius norm and at most $\eta/L$ in "
    r"operator norm, which adds up to $\eta$ over the layers. "
    f"Input {ex.SPLIT_DIMS[0]} and output {ex.SPLIT_DIMS[1]}, as for the digits data."
)
s1, s2 = st.columns(2)
with s1:
    split_depth = st.slider("depth L", 1, 32, 8, key="how_split_depth")
with s2:
    split_width = st.select_slider("width", [16, 32, 64, 128, 256, 512, 1024], 128, key="how_split_width")
split = ex.layer_split(split_depth, split_width, *ex.SPLIT_DIMS, G)
st.plotly_chart(figs.fig_layer_split(split), width="stretch", key="how_fig_split")
st.dataframe(
    split[list(ex.SPLIT_COLUMNS)], hide_index=True, key="how_split_table",
    column_config={key: st.column_config.NumberColumn(title, format=form) if form else title
                   for key, (title, form) in ex.SPLIT_COLUMNS.items()},
)

# ---------------------------------------------------------------------------------------------
st.header("5 · Why depth breaks a fixed learning rate")
st.markdown(
    "Take one network at initialisation, one batch and one gradient, and ask how far each "
    r"optimiser's **first** step would move every layer. Adam's first step is "
    r"$\mathrm{lr}\cdot g/(|g|+\epsilon) \approx \mathrm{lr}\cdot\operatorname{sign}(g)$: roughly "
    "the same fraction of every layer, however many layers there are. By step 2 those fractions "
    "compound, so the bound on the output's change grows exponentially with depth. AGD splits one "
    r"budget $\eta$ among the layers, so its bound stays below $e^\eta - 1$ at any depth. Both "
    "optimisers start from the same weights (AGD's initialisation) and see the same gradient; "
    "only the rule that turns the gradient into a step differs."
)
d1, d2, d3, d4 = st.columns(4)
with d1:
    demo_depth = st.slider("depth", 2, 32, 16, key="how_demo_depth")
with d2:
    demo_width = st.select_slider("width", [32, 64, 128], 64, key="how_demo_width")
with d3:
    demo_data = st.radio(
        "data", ex.DEMO_DATA, horizontal=True, key="how_demo_data",
        help="digits: a batch of 128 training images; random: Gaussian inputs, random labels.",
    )
with d4:
    demo_norm = st.radio(
        "measure", ex.DEMO_NORMS, horizontal=True, key="how_demo_norm",
        format_func=ex.NORM_LABELS.get,
        help="Operator norm: the quantity in the bound. Frobenius: the rel_update the app logs.",
    )
compare_depths = st.toggle("Compare depths 2 to 32", value=True, key="how_demo_compare")

with st.spinner("One forward and backward pass…"):
    demo = ex.in_norm(_depth_demo(demo_depth, demo_width, demo_data), demo_norm)
    totals = ex.in_norm(_depth_totals(demo_width, demo_data), demo_norm) if compare_depths else None
last = demo.iloc[-1]
e1, e2, e3, e4 = st.columns(4)
e1.metric("Adam: ∏(1 + rel_k) − 1", f"{last['adam_bound']:.3f}")
e2.metric("AGD: ∏(1 + rel_k) − 1", f"{last['agd_bound']:.3f}")
e3.metric("AGD's G at init", f"{last['G']:.3f}")
e4.metric("AGD's η", f"{last['eta']:.3f}", help=r"$e^\eta - 1$ caps AGD's bound in operator norm.")
p1, p2 = st.columns(2)
with p1:
    fig = figs.fig_depth_layers(demo, ex.NORM_SYMBOLS[demo_norm])
    st.plotly_chart(fig, width="stretch", key="how_fig_demo_layers")
with p2:
    st.plotly_chart(figs.fig_depth_bound(demo), width="stretch", key="how_fig_demo_bound")
if totals is not None:
    st.plotly_chart(figs.fig_depth_totals(totals, demo_depth), width="stretch", key="how_fig_demo_totals")
st.caption(
    "Relative updates are ‖ΔW_k‖/‖W_k‖ of the first step, Adam at its default lr = 1e-3. "
    "In Frobenius norm both come out smaller, because a step has a lower stable rank than "
    "AGD's orthogonal weights; the growth with depth contrasts the same way."
)

st.divider()
st.caption(
    f"Reference: {ex.PAPER}. Equations in our notation; see the paper for the conditions and proofs."
)
