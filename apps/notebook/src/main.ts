document.querySelector('#app')!.textContent = 'layerquant notebook';
