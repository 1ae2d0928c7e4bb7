// Element type of layout_copy.wgsl: four f32 (planes a multiple of 4 long).
alias E = vec4f;
