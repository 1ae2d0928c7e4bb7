// Element type of layout_copy.wgsl: one f32.
alias E = f32;
