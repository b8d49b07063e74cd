"""The defaults matrix of issue 17 (docs/solvers.md, "Measured on the stochastic quadratic").

Every algorithm on every problem of the catalogue (tiny presets, `small` and benchopt's
rank-one `stochastic_quadratic`, BSGM alone on the fixed-point `equilibrium`) x full batch,
B = 8 and B = 128 with and without replacement, with the default rule and nothing else. Run
from the repository root after `cargo build --release`; ITERS (default 300) iterations per
run; one line per run on stdout (stop reason, L(x) or metric ratio last/first - 1).
BILEVEL_BIN names another binary; MATRIX_ONLY=problem.preset runs one problem.
solvers/tests/defaults.rs is the test suite's version (200 iterations).
"""
import subprocess, json, sys, os, concurrent.futures as cf
import pathlib
BIN=os.environ.get("BILEVEL_BIN") or str(pathlib.Path("target/release/bilevel").resolve())
algos=["amigo-cg","amigo-gd","aid-bio","aid-cg","aid-gd","aid-cg-ws","aid-fp","aid-n","itd","bsgm","stocbio","bsa","ttsa","sustain","adam-sustain","bo-rep"]
problems=[("quadratic","tiny"),("stochastic_quadratic","tiny"),("stochastic_quadratic","small"),("stochastic_quadratic","benchopt"),("logreg_text","tiny"),("logreg_binary","tiny"),("logreg_per_class","tiny"),("hyperclean","tiny"),("meta_learning","tiny"),("distillation","tiny"),("equilibrium","tiny")]
batches=[None,("8","replacement"),("8","epochs"),("128","replacement"),("128","epochs")]
extra=sys.argv[1:] 
iters=os.environ.get("ITERS","300")
def one(job):
    a,(p,pre),b=job
    tag=f"{p}.{pre}.{a}.{'full' if b is None else b[0]+b[1][0]}"
    j=f"/tmp/mx/{tag}.json"; t=f"/tmp/mx/{tag}.csv"
    cmd=[BIN,"solve","--problem",p,"--preset",pre,"--algo",a,"--max-iters",iters,"--eval-every",iters,"--json",j,"--trace",t]+extra
    if b: cmd+=["--batch-size",b[0],"--sampling",b[1]]
    try:
        r=subprocess.run(cmd,capture_output=True,text=True,timeout=120)
    except subprocess.TimeoutExpired:
        return tag,"TIMEOUT","",None
    res=None
    if os.path.exists(j) and os.path.getsize(j)>0:
        try: res=json.load(open(j))
        except Exception: pass
    first=None
    if os.path.exists(t):
        lines=open(t).read().splitlines()
        if len(lines)>1:
            hdr=lines[0].split(","); row=lines[1].split(","); lastrow=lines[-1].split(",")
            first=dict(zip(hdr,row)); first["_last"]=dict(zip(hdr,lastrow))
    return tag,r.returncode,(r.stderr.strip().splitlines() or [""])[-1][:200],(res,first)
os.makedirs("/tmp/mx",exist_ok=True)  # per-run JSON and CSV
only=os.environ.get("MATRIX_ONLY")  # e.g. "stochastic_quadratic.benchopt": one problem.preset
jobs=[(a,p,b) for p in problems for a in algos for b in batches
      if (p[0]!="equilibrium" or a=="bsgm") and (not only or f"{p[0]}.{p[1]}"==only)]
out=[]
with cf.ThreadPoolExecutor(2) as ex:
    for tag,rc,err,rr in ex.map(one,jobs):
        res,first=rr if rr else (None,None)
        if res:
            m=res.get("metrics",{})
            f0 = first or {}
            def num(x):
                try: return float(x)
                except: return None
            rel0=num(f0.get("rel_error")); g0=num(f0.get("grad_norm"))
            la=f0.get("_last",{})
            def prog(key):
                a=num(f0.get(key)); b=num(la.get(key))
                return None if a is None or b is None else (b-a)/max(abs(a),1e-300)
            pv=prog("value"); pm=None
            for k in ("val_loss","train_loss","loss"):
                if k in f0: pm=prog(k); break
            line=f"{tag:55s} rc={rc} stop={res.get('stop')} it={res.get('iterations')} value_ratio={pv} metric_ratio={pm} rel={rel0}->{res.get('rel_error')} g={g0}->{res.get('grad_norm')} err={err[:120] if rc else ''}"
        else:
            line=f"{tag:55s} rc={rc} ERR {err}"
        print(line,flush=True); out.append(line)
