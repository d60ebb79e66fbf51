document.querySelectorAll('table.lb th').forEach((th,i)=>th.addEventListener('click',()=>{
const tb=th.closest('table').tBodies[0];const rows=[...tb.rows];const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort((a,b)=>{const x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;const fx=parseFloat(x),fy=parseFloat(y);
if(isNaN(fx)&&isNaN(fy))return (x||'').localeCompare(y||'')*(asc?1:-1);if(isNaN(fx))return 1;if(isNaN(fy))return -1;
return (fx-fy)*(asc?1:-1)});rows.forEach(r=>tb.appendChild(r))}));
