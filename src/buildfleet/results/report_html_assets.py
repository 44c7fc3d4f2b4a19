"""The HTML report's style sheet and script, inlined into every page.

Kept apart from the page assembly so each can be read on its own. The script
only adds to a page that works without it (grid, anchors from cells to their
error lines, per-arch plots): the filter (arch, status, text that also
searches the error and warning lines), sorting by any column, the side
panel with a cell's lines, a board's own size plot on demand, and filters
given in the page's address (``index.html?arch=arm&status=error&q=mmc``).
It touches the 1,500 rows of a world build with plain loops and one
reflow per change.
"""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.15em;margin:1.5em 0 .5em}
.counts span{margin-right:1.2em;padding:0 .4em;border-radius:3px}
.controls{position:sticky;top:0;z-index:3;background:#fafafa;padding:.4em 0;
display:flex;gap:.8em;align-items:center;flex-wrap:wrap}
.controls input[type=search]{width:22em}
table.grid{border-collapse:collapse;table-layout:fixed}
.grid th,.grid td{border:1px solid #ccc;padding:1px 4px;text-align:center;overflow:hidden;
white-space:nowrap;text-overflow:ellipsis}
.grid thead th{font-weight:normal;font-size:12px;background:#eee;position:sticky;top:2.6em;
z-index:2;cursor:pointer}
.grid thead th[data-dir=asc]::after{content:" \\25B2"}
.grid thead th[data-dir=desc]::after{content:" \\25BC"}
.grid th.board{text-align:left;font-weight:normal;font-family:monospace}
.grid td.arch,.grid td.num{font-size:12px;color:#555}.grid td.num{text-align:right}
td.cell{cursor:pointer;font-size:12px} td.cell a{color:inherit;text-decoration:none;display:block}
.ok{background:#c8efc8}.warning{background:#fbe7a1}.error{background:#f4b0ab}
.not-built{background:#e4e4e4;color:#777} td.cell.sel{outline:3px solid #36c}
pre{white-space:pre-wrap;text-align:left;font-size:12px;margin:.3em 0}
#panel{position:fixed;right:1em;bottom:1em;width:45%;max-height:45%;overflow:auto;z-index:5;
background:#fff;border:1px solid #999;padding:.5em 1em;box-shadow:0 2px 8px #0003;display:none}
#panel .close{float:right;cursor:pointer;border:0;background:none;font-size:16px}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{background:#fff;border:1px solid #ddd;padding:.4em}
.plot h3{font:12px monospace;margin:0}.muted{color:#888;font-size:12px}
svg text{font-size:9px;fill:#888} svg .zero{stroke:#bbb;stroke-dasharray:3 2}
svg .band{fill:#36c3;stroke:none} svg .mean{fill:none;stroke:#36c;stroke-width:2}
svg circle{fill:#36c}
#logs,.plots{content-visibility:auto;contain-intrinsic-size:auto 1500px}
.log{background:#fff;border:1px solid #ddd;margin:.4em 0;padding:.2em .6em}
.log h3{font:12px monospace;margin:.2em 0;white-space:normal}
.log:target{outline:3px solid #36c}
"""

JS = """
(function(){
  'use strict';
  var data=JSON.parse(document.getElementById('report-data').textContent);
  var tbody=document.getElementById('rows');
  var rows=Array.prototype.slice.call(tbody.rows);
  var q=document.getElementById('q'),archSel=document.getElementById('arch'),
      stSel=document.getElementById('status'),shown=document.getElementById('shown');
  var panel=document.getElementById('panel'),ptitle=panel.querySelector('h3'),
      pbody=panel.querySelector('.body');
  var LETTER={'error':'e','warning':'w','ok':'o','not-built':'n'};
  var ORDER={'error':0,'warning':1,'not-built':2,'ok':3};
  var text={};
  rows.forEach(function(tr){
    text[tr.dataset.board]=(tr.dataset.board+' '+tr.dataset.arch).toLowerCase();});
  document.querySelectorAll('#logs div.log').forEach(function(div){
    var t=div.querySelector('pre').textContent.toLowerCase();
    div.dataset.boards.split(' ').forEach(function(b){
      if(text[b]!==undefined&&text[b].indexOf(t)<0){text[b]+='\\n'+t;}});
  });
  function apply(){
    var term=q.value.trim().toLowerCase(),arch=archSel.value,st=stSel.value,n=0;
    var want=st==='problem'?null:LETTER[st];
    for(var i=0;i<rows.length;i++){
      var tr=rows[i],has=tr.dataset.has;
      var ok=(!arch||tr.dataset.arch===arch)&&
        (!st||(want?has.indexOf(want)>=0:(has.indexOf('e')>=0||has.indexOf('w')>=0)))&&
        (!term||text[tr.dataset.board].indexOf(term)>=0);
      if(tr.hidden===ok){tr.hidden=!ok;}
      if(ok){n++;}
    }
    shown.textContent=n;
  }
  var timer=null;
  q.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(apply,80);});
  archSel.addEventListener('change',apply);
  stSel.addEventListener('change',apply);
  function key(tr,k){
    if(k==='board'){return tr.dataset.board;}
    if(k==='arch'){return tr.dataset.arch+' '+tr.dataset.board;}
    if(k==='delta'){return tr.dataset.delta===''?-Infinity:Number(tr.dataset.delta);}
    return ORDER[tr.cells[2+Number(k)].dataset.status];
  }
  document.querySelectorAll('.grid thead th[data-sort]').forEach(function(th){
    th.addEventListener('click',function(){
      var k=th.dataset.sort,desc=th.dataset.dir==='asc';
      document.querySelectorAll('.grid thead th[data-dir]').forEach(function(o){
        delete o.dataset.dir;});
      th.dataset.dir=desc?'desc':'asc';
      var sign=desc?-1:1;
      var keyed=rows.map(function(tr,i){return [key(tr,k),i,tr];});
      keyed.sort(function(a,b){
        return a[0]<b[0]?-sign:a[0]>b[0]?sign:a[1]-b[1];});
      rows=keyed.map(function(x){return x[2];});
      var frag=document.createDocumentFragment();
      rows.forEach(function(tr){frag.appendChild(tr);});
      tbody.appendChild(frag);
    });
  });
  function show(title,node){
    ptitle.textContent=title;pbody.textContent='';pbody.appendChild(node);
    panel.style.display='block';
  }
  panel.querySelector('.close').addEventListener('click',function(){
    panel.style.display='none';});
  var selected=null;
  function esc(s){return String(s).replace(/[&<>"]/g,function(c){
    return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
  function boardPlot(target){
    var v=data.sizes[target]||[],labels=data.commits,W=440,H=150,P=14,pts=[];
    v.forEach(function(s,i){if(s!==null){pts.push([i,s]);}});
    var div=document.createElement('div');
    if(!pts.length){div.textContent='no size data';return div;}
    var lo=Math.min.apply(null,pts.map(function(p){return p[1];})),
        hi=Math.max.apply(null,pts.map(function(p){return p[1];})),span=(hi-lo)||1,
        n=Math.max(1,labels.length-1);
    function x(i){return (P+40+(W-2*P-40)*i/n).toFixed(1);}
    function y(s){return hi===lo?H/2:(H-P-12-(H-2*P-14)*(s-lo)/span).toFixed(1);}
    var svg='<svg class="sizeplot" width="'+W+'" height="'+H+'" viewBox="0 0 '+W+' '+H+
      '" xmlns="http://www.w3.org/2000/svg"><polyline class="mean" points="'+
      pts.map(function(p){return x(p[0])+','+y(p[1]);}).join(' ')+'"/>';
    pts.forEach(function(p){svg+='<circle cx="'+x(p[0])+'" cy="'+y(p[1])+'" r="3"><title>'+
      esc(labels[p[0]])+': '+p[1]+' bytes</title></circle>';});
    svg+='<text x="2" y="'+(Number(y(hi))+3)+'">'+hi+'</text><text x="2" y="'+
      (Number(y(lo))+3)+'">'+lo+'</text>';
    labels.forEach(function(l,i){svg+='<text x="'+x(i)+'" y="'+(H-2)+
      '" text-anchor="middle">'+esc(l)+'</text>';});
    div.innerHTML=svg+'</svg>';
    return div;
  }
  tbody.addEventListener('click',function(ev){
    var a=ev.target.closest('a.b');
    if(a){
      ev.preventDefault();
      var tr=a.closest('tr');
      show(tr.dataset.board+' ('+tr.dataset.arch+'): u-boot size over the commits',
           boardPlot(tr.dataset.board));
      return;
    }
    var td=ev.target.closest('td.cell');
    if(!td){return;}
    ev.preventDefault();
    if(selected){selected.classList.remove('sel');}
    selected=td;td.classList.add('sel');
    var link=td.querySelector('a'),node=document.createElement('div');
    var label=data.commits[Number(td.cellIndex)-2];
    if(link){
      var block=document.getElementById(link.getAttribute('href').slice(1));
      var pre=document.createElement('pre');
      pre.textContent=block.querySelector('pre').textContent;
      node.appendChild(pre);
      var more=document.createElement('a');
      more.href=link.getAttribute('href');
      more.textContent='every board with these lines';
      node.appendChild(more);
    }else{node.textContent='(no error or warning lines)';}
    show(td.dataset.board+' @ '+label+': '+td.dataset.status,node);
  });
  var params=new URLSearchParams(location.search);
  if(params.has('q')){q.value=params.get('q');}
  if(params.has('arch')){archSel.value=params.get('arch');}
  if(params.has('status')){stSel.value=params.get('status');}
  apply();
  document.getElementById('ncells').textContent=
    document.querySelectorAll('td.cell').length;
  document.body.dataset.ready='1';
})();
"""
