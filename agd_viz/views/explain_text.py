"""The words of the How AGD works page: its paragraphs and equations, each claim cited from the
paper's one table (`agd_viz.paper.ITEMS`) and checked against the paper's LaTeX. Kept apart from
the numbers (`views.explain`) so the page stays a thin list of widgets and figures.

Markdown strings use $…$ for inline mathematics; `LATEX` holds the display equations.
"""

from __future__ import annotations

from agd_viz import cost, paper

__all__ = ["TEXT", "LATEX", "HEADERS", "counterexample"]

R = paper.ref

HEADERS = ("1 · The problem: a learning rate for every network", "2 · Measuring size",
           "3 · The derivation in three steps", "4 · The update itself", "5 · Why depth breaks a fixed learning rate",
           "6 · Beyond the paper: AGD beside Muon")

TEXT = {
    "intro": (
        "Automatic gradient descent (AGD) trains a network with no learning rate and no schedule. This page walks "
        "through why that is possible, following Bernstein, Mingard, Huang, Azizan & Yue (2023), *Automatic Gradient "
        f"Descent: Deep Learning without Hyperparameters* ([arXiv:2304.05187]({paper.PAPER_URL})). The words and "
        "figures are ours; equations are cited to the paper by its own numbering and written in this app's "
        "notation, with the conditions under which the paper proves them. Every figure is live: move a control and "
        "its numbers change."),
    "problem": (
        "Gradient descent moves each weight by *learning rate × gradient*. The right learning rate depends on the "
        "network: make it deeper or wider and yesterday's value is either too large (the loss blows up) or too small "
        "(nothing moves). On top come a warm-up and a decay schedule, each with knobs of its own, so every new "
        "architecture costs a grid of trial runs. AGD's idea is that the architecture already says how far a step "
        "may go: if we can bound how much the network's output moves when its weights move, the step size can be "
        "*computed* instead of searched for."),
    "table_caption": (
        f"Our summary of {R('table1')} of the paper. Width/depth scaling: the method says how to change its settings "
        "when the network grows. Memory: the weights plus the optimiser's per-weight buffers (Adam keeps two running "
        "averages, momentum one, AGD none)."),
    "vectors": (
        "To call a step *small* we first need a notion of size. For a vector there are several sensible ones: the "
        "Manhattan norm adds up the absolute entries, the Euclidean norm is the straight-line length, and the "
        "infinity norm keeps only the largest entry. Each curve below is the set of vectors with the same size as "
        "yours in one of these norms."),
    "matrices": (
        "A weight matrix acts on vectors, so its most useful size is how much it can stretch one: the **operator "
        r"(spectral) norm** $\|W\|_*$, the largest singular value. The **Frobenius norm** $\|W\|_F$ treats the "
        "matrix as one long vector: the root of the sum of all squared singular values. The **rank** counts the "
        r"non-zero singular values; the **stable rank** $\|W\|_F^2/\|W\|_*^2$ counts the directions that carry a "
        "sizeable share of the stretch. It never exceeds the rank, but unlike the rank it does not jump when a little "
        "noise is added."),
    "matrices_caption": (
        r"AGD starts every layer as a semi-orthogonal matrix scaled to $\|W_k\|_* = \sqrt{d_k/d_{k-1}}$ "
        f"({R('alg1')}, initialise_weights), and the Live training page logs `w_spec`, `w_fro` and `w_srank` of every "
        "layer: these same three numbers."),
    "derivation": (
        r"Write the network's weights as $W_1, \dots, W_L$ (layer $k$ maps $d_{k-1}$ numbers to $d_k$), its output "
        r"on input $x$ as $f(x)$, and the objective $\mathcal{L}$ as the average of $\ell(f(x), y)$ over the data $S$. "
        f"The paper derives AGD for fully-connected relu networks with the square loss ({R('sec3')}); the three "
        "steps below are its Step 1 to Step 3."),
    "step1": (
        f"*The expansion* ({R('prop1')}) holds for any differentiable model: the first-order guess of the new loss "
        "is off for two separate reasons, the network bends in its weights and the loss bends in the output. The "
        f"first term is **not** free: {R('assumption1')} ({R('sec2_2')}) *assumes* that its average over the data "
        "is zero, because the two vectors have no reason to be aligned; with it, the objective after a step is its "
        f"first-order expansion plus the Bregman divergence of the loss alone ({R('theorem1')}), which depends only "
        f"on how far the **output** moves. For the square loss it is exactly $\\|\\Delta f\\|_2^2 / 2d_L$ "
        f"({R('lemma1')}); for cross-entropy it is a KL divergence, at most $\\tfrac12\\|\\Delta f\\|_\\infty^2$ to "
        f"second order ({R('lemma2')}, {R('corollary2')})."),
    "step2": (
        f"*{R('lemma4')}, deep relative trust,* bounds the output's change in absolute terms for a fully-connected "
        "network with any weights: each layer passes on its input's change and adds its own, so the relative "
        r"changes $\|\Delta W_k\|_*/\|W_k\|_*$ compound multiplicatively, scaled by the network's largest possible "
        r"output $\prod_k\|W_k\|_*\,\|x\|_2$. Under **" + R("prescription1") + r"** (inputs of norm $\sqrt{d_0}$, "
        r"$\|W_k\|_* = \sqrt{d_k/d_{k-1}}$ and steps $\|\Delta W_k\|_* = \sqrt{d_k/d_{k-1}}\cdot\eta/L$) the product "
        r"of norms telescopes to $\sqrt{d_L/d_0}$ and the bracket is at most $(1+\eta/L)^L - 1 \le e^\eta - 1$, "
        r"which gives the second inequality. It is **not** a bound on $\|\Delta f\|/\|f\|$: see the example below."),
    "step2_counter": (
        r"One layer, $W = \mathrm{diag}(1, 10^{-3})$, $x = e_2$, $\Delta W = 0.01\,e_1e_2^\top$. The output "
        r"$f = Wx$ has norm $10^{-3}$ and moves by $\|\Delta W x\| = 0.01$: a relative change of **@REL**, "
        r"while $\prod(1 + \|\Delta W\|_*/\|W\|_*) - 1 = @FACTOR$. " + R("lemma4") + "'s absolute bound, "
        r"$\|W\|_*\|x\|\cdot @FACTOR = @BOUND$, holds (with equality): the output changed by @CHANGE."),
    "step3": (
        f"*{R('lemma5')}* puts the two together for the square loss, under {R('assumption1')} and "
        f"{R('prescription1')}: the Bregman term $\\|\\Delta f\\|^2/2d_L$ of {R('lemma1')} with "
        r"$\|\Delta f\| \le \sqrt{d_L}(e^\eta - 1)$ from " + R("lemma4") + r" is the penalty $\tfrac12(e^\eta-1)^2$. "
        r"Give every layer the same relative step $\eta/L$ along its negative gradient; with "
        f"{R('assumption2')} (every layer's gradient of stable rank 1, so its operator and Frobenius norms agree) "
        r"the first-order term is $-\eta G$, and the best $\eta$ for the bound has a closed form "
        f"({R('theorem2')}). No learning rate is left to choose. For cross-entropy the paper's bound has "
        r"$\tfrac12\|\Delta f\|_\infty^2$ instead ({R}); when the change is spread over the outputs "
        r"$\|\Delta f\|_\infty^2 \approx \|\Delta f\|_2^2/d_L$, which matches the square loss to second order: "
        "that, not a proof, is how the paper carries AGD over to cross-entropy (its ImageNet run)."
    ).replace("{R}", R("corollary2")),
    "eta_shape": (
        r"For a small gradient $\eta \approx G$: AGD behaves like gradient descent on normalised steps. For a large "
        r"one $\eta$ grows only like $\tfrac12\log G$, so a sudden spike in the gradient cannot throw the weights far."),
    "eta_in_training": (
        f"How η moves during training is a measurement, not a consequence of the formula. The paper reports "
        f"({R('fig6')}) that for larger networks η first **rises slowly** while the objective falls slowly, then "
        "**drops sharply** together with the objective, typically as train accuracy reaches 100 %; and "
        f"({R('fig7')}) that η seemed to **dip at first**, more so at larger batch sizes. Below: η in the most "
        "recent AGD run of this server's run store, next to its train accuracy."),
    "no_curve": (f"No AGD run of 20 steps or more in the run store yet: run the {R('fig6')} or {R('fig7')} "
                 "reproduction on the Paper page (a minute on a laptop) and its η appears here."),
    "lemma8": (
        f"The paper also proves a rate ({R('lemma8')}, {R('sec3_2')}): for the square loss, under "
        f"{R('assumption1')}, {R('assumption2')} and {R('prescription1')}, the smallest gradient summary of the "
        r"first $T$ full-batch steps obeys $\min_{t\le T} G_t^2 \le 11/T$. The Live page draws $\sqrt{11/t}$ on its "
        "G panel; there G is a minibatch's and the assumptions are not checked, so it is a reference, not a guarantee."),
    "sharing": (
        r"$\eta$ is a budget for the whole network. Each of the $L$ layers gets $\eta/L$ of it, measured relative "
        r"to the layer's own size: layer $k$ moves by $\|\Delta W_k\|_F = \frac{\eta}{L}\sqrt{d_k/d_{k-1}}$. At "
        r"AGD's initialisation $\|W_k\|_F = \sqrt{d_k/d_{k-1}}\,\sqrt{\min(d_k, d_{k-1})}$, so the relative change is "
        r"$\frac{\eta}{L}/\sqrt{\min(d_k, d_{k-1})}$ in Frobenius norm and at most $\eta/L$ in operator norm, which "
        r"adds up to $\eta$ over the layers."),
    "drift": (
        r"AGD does **not** hold $\|W_k\|_*$ at $\sqrt{d_k/d_{k-1}}$. It starts there, and each step changes it by at "
        r"most $\|\Delta W_k\|_* \le \frac{\eta}{L}\sqrt{d_k/d_{k-1}}$ (Weyl's inequality; while the norm is at its "
        r"prescribed value that is the paper's factor $1 \pm \eta/L$, " + R("sec3") + "). Over many steps the norm can "
        "drift; nothing pulls it back. The Live page's scaled spectral norm chart shades how far AGD's steps could "
        "have taken it."),
    "depth": (
        "Take one network at initialisation, one batch and one gradient, and ask how far each optimiser's **first** "
        r"step would move every layer. Adam's first step is $\mathrm{lr}\cdot g/(|g|+\epsilon) \approx "
        r"\mathrm{lr}\cdot\operatorname{sign}(g)$: roughly the same fraction of every layer, however many layers there "
        f"are, and so is Muon's (its lr times an orthogonalised gradient). Through {R('lemma4')} those fractions compound, "
        r"so the bound on the output's change grows exponentially with depth. AGD splits one budget $\eta$ among the "
        r"layers, so in the operator norm its bracket stays below $e^\eta - 1$ at any depth. All three start from the "
        "same weights (AGD's initialisation) and see the same gradient; only the rule that turns the gradient into a "
        "step differs."),
    "depth_caption": (
        "Relative updates are ‖ΔW_k‖/‖W_k‖ of the first step: Adam at its default lr = 1e-3, Muon at lr = 0.02 "
        "(torch.optim.Muon's first step: its Newton–Schulz orthogonalisation and decoupled weight decay, in numpy). "
        f"In the operator norm the product is the bracket of {R('lemma4')}; its other factor, ∏‖W_k‖*·‖x‖, is √d_L under "
        "AGD's initialisation. In the Frobenius norm (the rel_update the app logs) the products are smaller and are "
        "not a bound of the paper; the growth with depth contrasts the same way."),
    "muon": (
        "Muon (torch.optim.Muon) came after AGD from the same idea, steepest descent under the spectral norm: it "
        "orthogonalises its momentum with five Newton–Schulz steps, which pushes all but its smallest singular values "
        r"to roughly 0.7–1.2, so the update's spectral norm is near $\mathrm{lr}\cdot\sqrt{\max(1, d_k/d_{k-1})}$. It keeps a learning rate (0.02 is its authors' value; "
        "torch's default 1e-3 trains far slower) and trains 2-D weight matrices only, no conv kernels or biases. "
        "**What to look for:** the *stable rank of the update*. AGD's update is the normalised gradient, so its "
        f"stable rank is the gradient's, close to 1 when {R('assumption2')} is nearly true. Adam's first step is "
        "the sign of the gradient, and the sign of a nearly rank-one matrix is nearly rank one, so its stable rank "
        "starts close to the gradient's and grows slowly. Muon's orthogonalisation lifts the small singular values "
        "of its momentum towards the largest, so its update's stable rank is many times higher (below: the first "
        "step; on digits at depth 32 × width 128, 6–18 against AGD's 1.0–1.2 and Adam's 1.1–2.1 over 400 steps). "
        "The Live page logs it per layer as "
        "`u_srank` (preset “AGD, Muon and Adam at depth 32”), beside the relative update and each optimiser's rate."),
    "reference": f"Reference: {paper.PAPER}. Equations in our notation; see the paper for the proofs.",
    "measure_help": f"Operator norm: the quantity in {R('lemma4')}. Frobenius: the rel_update the app logs.",
    "no_store": ("No AGD run in the run store yet: start one on the Live training page and the G it measures will "
                 "be marked on this curve."),
    "eval_note": f"(Train accuracy is evaluated on at most {cost.EVAL_MAX:,} training examples.)",
}

LATEX = {
    "norms": r"\|v\|_1 = \sum_i |v_i| \qquad \|v\|_2 = \sqrt{\textstyle\sum_i v_i^2} \qquad \|v\|_\infty = \max_i |v_i|",
    "matrix_norms": (r"\|W\|_* = \sigma_{\max}(W) \qquad \|W\|_F = \sqrt{\textstyle\sum_i \sigma_i^2} \qquad "
                     r"1 \le \operatorname{srank}(W) = \frac{\|W\|_F^2}{\|W\|_*^2} \le \operatorname{rank}(W)"),
    "expansion": (
        r"\begin{aligned}\mathcal{L}(W+\Delta W) = {} & \mathcal{L}(W) + \nabla_W\mathcal{L}^{\top}\Delta W \\"
        r" & + \frac{1}{|S|}\sum_{(x,y)\in S}\underbrace{\nabla_f\ell^{\top}\big(\Delta f(x)"
        r" - \nabla_W f(x)\,\Delta W\big)}_{\text{the network is not linear: taken to be 0 (" + R("assumption1") + r")}} \\"
        r" & + \frac{1}{|S|}\sum_{(x,y)\in S}\underbrace{\ell(f+\Delta f) - \ell(f)"
        r" - \nabla_f\ell^{\top}\Delta f}_{\text{Bregman divergence of the loss}}\end{aligned}"),
    "lemma4": (
        r"\|\Delta f(x)\|_2 \;\le\; \Big[\prod_{k=1}^{L}\|W_k\|_*\Big]\,\|x\|_2\,\Big[\prod_{k=1}^{L}"
        r"\Big(1 + \frac{\|\Delta W_k\|_*}{\|W_k\|_*}\Big) - 1\Big] \;\le\; \sqrt{d_L}\,\big(e^{\eta} - 1\big)"
        r"\quad\text{(the second under " + R("prescription1") + ")}"),
    "penalty": (r"\frac{1}{2d_L}\,\|\Delta f(x)\|_2^2 \;\le\; \frac{1}{2d_L}\,d_L\,\big(e^\eta - 1\big)^2 "
                r"= \tfrac12\big(e^\eta - 1\big)^2"),
    "update": (r"\Delta W_k = -\frac{\eta}{L}\sqrt{\frac{d_k}{d_{k-1}}}\;"
               r"\frac{\nabla_{W_k}\mathcal{L}}{\|\nabla_{W_k}\mathcal{L}\|_F},\qquad "
               r"G = \frac{1}{L}\sum_{k=1}^{L}\sqrt{\frac{d_k}{d_{k-1}}}\,\|\nabla_{W_k}\mathcal{L}\|_F"),
    "minimise": (r"\eta^\star = \arg\min_{\eta \ge 0}\Big[-\eta\,G + \tfrac12\big(e^{\eta}-1\big)^2\Big]"
                 r"\;\Longrightarrow\; e^{2\eta^\star} - e^{\eta^\star} = G"),
    "eta": r"\eta^\star = \log\frac{1+\sqrt{1+4G}}{2}",
}


def counterexample(numbers) -> str:
    """TEXT["step2_counter"] with the numbers of `views.explain.relative_counterexample()`."""
    text = TEXT["step2_counter"]
    for token, key in (("@REL", "relative_change"), ("@FACTOR", "factor"), ("@BOUND", "lemma4_bound"),
                       ("@CHANGE", "change")):
        text = text.replace(token, f"{numbers[key]:.3g}")
    return text
