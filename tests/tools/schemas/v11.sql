-- The catalog schema as version 11 shipped (commit a853aae), for the migration tests.
CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    status VARCHAR NOT NULL,            -- running | interrupted | failed | complete
    config JSON NOT NULL,
    config_hash VARCHAR NOT NULL,
    model_id VARCHAR,
    corpus JSON,
    tokens BIGINT,
    package_versions JSON,
    error VARCHAR,
    started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS models (
    model_id VARCHAR PRIMARY KEY,       -- the weights' sha256
    name VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    architecture VARCHAR NOT NULL,
    n_layers INTEGER NOT NULL,
    d_model INTEGER NOT NULL,
    config JSON NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_sets (
    feature_set_id VARCHAR PRIMARY KEY,
    model_id VARCHAR NOT NULL,
    hook VARCHAR NOT NULL,
    hf_module VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,              -- neuron | residual | attention | sae | transcoder
    n_features INTEGER NOT NULL,
    window_length INTEGER NOT NULL,
    n_windows INTEGER NOT NULL,
    tokens BIGINT NOT NULL,
    source_path VARCHAR,
    source_sha256 VARCHAR,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS features (
    feature_set_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    max_act FLOAT,
    min_act FLOAT,
    mean_act DOUBLE,
    density DOUBLE,                     -- fraction of real tokens above the threshold
    window_density DOUBLE,              -- fraction of windows with any token above it
    n_tokens BIGINT NOT NULL,
    hist_max DOUBLE,                    -- histogram bins split (0, hist_max] evenly
    hist_counts BIGINT[],
    quantile_edges DOUBLE[],
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (feature_set_id, feature)
);
CREATE TABLE IF NOT EXISTS windows (
    feature_set_id VARCHAR NOT NULL,
    window_id INTEGER NOT NULL,
    token_ids INTEGER[] NOT NULL,
    tokens VARCHAR[] NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (feature_set_id, window_id)
);
CREATE TABLE IF NOT EXISTS examples (
    feature_set_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    bucket VARCHAR NOT NULL,            -- top | quantile | random
    rank INTEGER NOT NULL,              -- order within the bucket (top: by activation)
    quantile INTEGER,                   -- quantile index for bucket = quantile
    split VARCHAR NOT NULL,             -- explain | score: explainers never see score examples
    window_id INTEGER NOT NULL,
    max_act FLOAT NOT NULL,
    acts FLOAT[] NOT NULL,              -- one value per window token; 0 at special tokens
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS sae_evals (
    run_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    hook VARCHAR NOT NULL,              -- or 'replacement': a transcoder set with every MLP replaced at once
    sae_path VARCHAR NOT NULL,
    sae_sha256 VARCHAR NOT NULL,        -- joins feature_sets.source_sha256 (a transcoder set: its whole folder)
    tokens BIGINT NOT NULL,             -- held-out real tokens evaluated
    fvu DOUBLE,
    mean_l0 DOUBLE,
    dead_fraction DOUBLE,
    loss_clean DOUBLE,
    loss_spliced DOUBLE,
    loss_zero_ablated DOUBLE,
    loss_increase DOUBLE,
    loss_recovered DOUBLE,
    baseline VARCHAR,                   -- NULL: the SAE or transcoder itself; 'linear': its layer's ridge fit;
                                        -- 'mean': its layer's mean output (a transcoder eval's baselines)
    dead_tokens BIGINT,                 -- corpus tokens the dead fraction was counted over
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS explanations (
    explanation_id VARCHAR PRIMARY KEY,
    feature_set_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    explainer VARCHAR NOT NULL,         -- oneshot | evidence | token-stats
    llm VARCHAR NOT NULL,               -- backend and model; '' for explainers without one
    prompt_hash VARCHAR NOT NULL,       -- sha256 prefix of the prompt file; '' without one
    status VARCHAR NOT NULL,            -- ok | failed
    text VARCHAR,
    error VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    embedding FLOAT[],                  -- unit length; cast to FLOAT[n] for array_cosine_similarity
    embedder VARCHAR,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS scores (
    explanation_id VARCHAR NOT NULL,
    scorer VARCHAR NOT NULL,            -- simulation | detection | fuzzing | embedding
    metric VARCHAR NOT NULL,            -- pearson | balanced_accuracy | auroc; '' when failed
    llm VARCHAR NOT NULL,
    prompt_hash VARCHAR NOT NULL,
    status VARCHAR NOT NULL,            -- ok | failed
    value DOUBLE,
    n INTEGER,                          -- held-out examples the value rests on
    ci_low DOUBLE,                      -- 95% bootstrap interval
    ci_high DOUBLE,
    details JSON,
    error VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS experiments (
    explanation_id VARCHAR,             -- the explanation an investigation arrived at; NULL for `interp ask`
    step INTEGER NOT NULL,
    tool VARCHAR NOT NULL,              -- a tool name, or llm:<step> for what the LLM wrote
    arguments JSON NOT NULL,
    ok BOOLEAN NOT NULL,                -- false: invalid arguments or a failed call, never run
    result VARCHAR NOT NULL,            -- exactly the text the LLM was shown (or wrote)
    seconds DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS audits (
    run_id VARCHAR NOT NULL,
    feature_set_id VARCHAR NOT NULL,
    concept VARCHAR NOT NULL,
    concept_key VARCHAR NOT NULL,       -- hash of name + description: written texts are reused by it
    description VARCHAR NOT NULL,
    positive JSON NOT NULL,             -- the texts used, from the file or written by the LLM
    negative JSON NOT NULL,
    texts_by VARCHAR NOT NULL,          -- 'file', or the LLM that wrote the missing texts
    probe_auroc DOUBLE, probe_ci_low DOUBLE, probe_ci_high DOUBLE, probe_p_value DOUBLE,
    mean_diff_auroc DOUBLE, mean_diff_ci_low DOUBLE, mean_diff_ci_high DOUBLE,
    n_texts INTEGER NOT NULL,
    verdict VARCHAR NOT NULL,           -- represented | weakly represented | not found
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    chance_auroc DOUBLE,                -- the best feature's activation AUROC by chance (95th pct, permutations)
    n_choose INTEGER, n_confirm INTEGER,  -- texts candidates were chosen on / confirmed on
    readout_gap DOUBLE, readout_gap_ci_low DOUBLE, readout_gap_ci_high DOUBLE, readout_gap_p DOUBLE,
    confounds JSON                      -- AUROC of each surface measure (length, punctuation, ...)
);
CREATE TABLE IF NOT EXISTS audit_candidates (
    run_id VARCHAR NOT NULL,
    feature_set_id VARCHAR NOT NULL,
    concept VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    feature INTEGER NOT NULL,
    found_by JSON NOT NULL,             -- search | aligned | active
    explanation VARCHAR,
    explanation_scores JSON,            -- the explanation's own scores from its label run
    similarity DOUBLE,
    activation_auroc DOUBLE,
    alignment DOUBLE,
    ablation DOUBLE,                    -- readout drop on positive texts, share of the positive-negative gap
    steering DOUBLE,                    -- readout rise on negative texts, same scale
    confidence DOUBLE,
    verdict VARCHAR NOT NULL,
    family_p DOUBLE,                    -- share of label permutations where some feature's AUROC reaches this one
    held_out_auroc DOUBLE, held_out_p DOUBLE,  -- on the texts it was not chosen on
    ablation_ci_low DOUBLE, ablation_ci_high DOUBLE, steering_ci_low DOUBLE, steering_ci_high DOUBLE
);
CREATE TABLE IF NOT EXISTS evals (
    run_id VARCHAR NOT NULL,
    eval VARCHAR NOT NULL,              -- planted | compare
    subject VARCHAR NOT NULL,           -- 'explainer NAME (LLM)', 'scorer NAME', or a compared configuration
    metric VARCHAR NOT NULL,
    value DOUBLE,
    n INTEGER NOT NULL,
    ci_low DOUBLE,
    ci_high DOUBLE,
    details JSON,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS graphs (
    graph_id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    transcoders_path VARCHAR NOT NULL,
    transcoders_sha256 VARCHAR NOT NULL,  -- joins feature_sets.source_sha256 (with hook mlp_in.L)
    prompt VARCHAR NOT NULL,
    token_ids INTEGER[] NOT NULL,       -- BOS first
    tokens VARCHAR[] NOT NULL,
    n_layers INTEGER NOT NULL,
    targets JSON NOT NULL,              -- [{label, token_id, probability}], the logit nodes in order
    settings JSON NOT NULL,             -- max_features, thresholds, batch size, ...
    active_features INTEGER NOT NULL,   -- active latents on the prompt; the graph keeps up to max_features
    n_features INTEGER NOT NULL,        -- feature nodes in the full graph
    replacement_score DOUBLE,
    completeness_score DOUBLE,
    check_n INTEGER,                    -- feature nodes ablated in the real model
    check_r DOUBLE,                     -- Pearson r of predicted vs measured target change
    check_ci_low DOUBLE,
    check_ci_high DOUBLE,
    perturb_r DOUBLE,                   -- Pearson r when each node is scaled by 0.9 instead: 0.1 x the prediction
    perturb_ci_low DOUBLE,
    perturb_ci_high DOUBLE,
    seconds DOUBLE,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS graph_nodes (
    graph_id VARCHAR NOT NULL,
    node INTEGER NOT NULL,              -- index in the full graph: features, errors, tokens, logits
    kind VARCHAR NOT NULL,              -- feature | error | token | logit
    layer INTEGER,                      -- features and errors
    position INTEGER NOT NULL,          -- token position (logits: the last)
    feature INTEGER,                    -- the latent, for feature nodes; the token id for token and logit nodes
    value DOUBLE,                       -- a feature's activation; a logit's probability
    influence DOUBLE,                   -- share of all influence carried by nodes at least this influential
    feature_set_id VARCHAR,             -- the layer's cached feature set, when there is one
    check_predicted DOUBLE,             -- the graph's predicted target change when ablated (checked nodes)
    check_measured DOUBLE,              -- the real model's
    check_perturbed DOUBLE,             -- the real model's change when the node is scaled by 0.9
    PRIMARY KEY (graph_id, node)
);
CREATE TABLE IF NOT EXISTS graph_edges (  -- the pruned adjacency: edges kept among kept nodes
    graph_id VARCHAR NOT NULL,
    source INTEGER NOT NULL,
    target INTEGER NOT NULL,
    weight DOUBLE NOT NULL              -- direct effect of source on target
);
CREATE TABLE IF NOT EXISTS graph_groups (  -- supernodes a person named in the graph page
    graph_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    nodes INTEGER[] NOT NULL,           -- graph_nodes.node of each member
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (graph_id, name)
);
INSERT INTO schema_info VALUES ('schema_version', '11');
